"""Progress of long jobs: a tqdm bar on a terminal, else a line at the start, at most every interval and at the end."""

from __future__ import annotations

import io

from ignite.engine import Engine
from tqdm import tqdm

from breastlab.cli import main
from breastlab.progress import EngineProgress, Progress, duration, progress


class Clock:
    """A clock that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def slow_items(items, clock: Clock, seconds: float):
    """Yield ``items``, each taking ``seconds`` of ``clock``."""
    for item in items:
        clock.now += seconds
        yield item


def test_lines_come_at_the_start_at_most_every_interval_and_at_the_end():
    clock, out = Clock(), io.StringIO()
    for _ in progress(range(10), "evaluate x", every_s=30, stream=out, clock=clock):
        clock.now += 7
    assert out.getvalue().splitlines() == [
        "evaluate x: 10 images",
        "evaluate x: 5/10 images (50%), 35s elapsed, ETA 35s",
        "evaluate x: 10/10 images (100%), done in 1m10s",
    ]


def test_a_quick_loop_writes_its_total_and_its_end_only():
    clock, out = Clock(), io.StringIO()
    assert list(slow_items(progress(["a", "b", "c"], "import y", every_s=30, stream=out, clock=clock), clock, 1)) \
        == ["a", "b", "c"]
    assert out.getvalue().splitlines() == ["import y: 3 images", "import y: 3/3 images (100%), done in 3s"]


def test_without_a_length_the_count_is_shown_without_share_or_eta():
    clock, out = Clock(), io.StringIO()
    items = (i for i in range(3))
    for _ in progress(items, "scores", unit="case", every_s=30, stream=out, clock=clock):
        clock.now += 20
    assert out.getvalue().splitlines() == ["scores: started", "scores: 2 cases, 40s elapsed",
                                           "scores: 3 cases, done in 1m00s"]


def test_a_loop_stopped_early_ends_with_the_count_reached():
    clock, out = Clock(), io.StringIO()
    for i in progress(range(163), "evaluate z", every_s=30, stream=out, clock=clock):
        clock.now += 40
        if i == 1:
            break
    assert out.getvalue().splitlines() == ["evaluate z: 163 images", "evaluate z: 1/163 images (0%), 40s elapsed, "
                                           "ETA 1h48m", "evaluate z: 1/163 images (0%), done in 1m20s"]


def test_on_a_terminal_a_tqdm_bar_is_shown_instead_of_lines():
    out = Terminal()
    shown = Progress(3, "evaluate t", stream=out)
    assert isinstance(shown.bar, tqdm)
    for _ in range(3):
        shown.update()
    assert shown.closed and "evaluate t" in out.getvalue() and "3/3" in out.getvalue()
    assert "done in" not in out.getvalue()
    assert Progress(3, "not a terminal", stream=io.StringIO()).bar is None


def test_lines_go_to_stderr_by_default(capsys):
    list(progress(range(2), "job"))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines()[0] == "job: 2 images"


def test_an_engine_shows_its_iterations_over_all_epochs_with_the_epoch():
    clock, out = Clock(), io.StringIO()
    engine = Engine(lambda engine, batch: setattr(clock, "now", clock.now + 20))
    EngineProgress("train b", every_s=30, stream=out, clock=clock).attach(engine)
    engine.run(range(3), max_epochs=2)
    assert out.getvalue().splitlines() == [
        "train b: 6 iterations",
        "train b: 2/6 iterations (33%), epoch 1/2, 40s elapsed, ETA 1m20s",
        "train b: 4/6 iterations (66%), epoch 2/2, 1m20s elapsed, ETA 40s",
        "train b: 6/6 iterations (100%), epoch 2/2, done in 2m00s",
    ]


def test_an_unannounced_engine_is_silent_unless_a_run_is_long():
    clock, out = Clock(), io.StringIO()
    step = {"seconds": 1}
    engine = Engine(lambda engine, batch: setattr(clock, "now", clock.now + step["seconds"]))
    EngineProgress("validate b", epochs=False, announce=False, every_s=30, stream=out, clock=clock).attach(engine)
    engine.run(range(2), max_epochs=1)
    assert out.getvalue() == ""
    step["seconds"] = 40
    engine.run(range(2), max_epochs=1)
    assert out.getvalue().splitlines() == ["validate b: 1/2 iterations (50%), 40s elapsed, ETA 40s",
                                           "validate b: 2/2 iterations (100%), done in 1m20s"]


def test_durations_are_short():
    assert [duration(s) for s in (0, 42.4, 59.6, 185, 3599, 7620)] == ["0s", "42s", "1m00s", "3m05s", "59m59s",
                                                                      "2h07m"]


def test_import_shows_its_progress_when_not_on_a_terminal(samples_dir, tmp_path, capsys):
    assert main(["import", str(samples_dir), str(tmp_path / "studies")]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == "import breast_lesions_usg: 6 images"
    assert lines[-1].startswith("import breast_lesions_usg: 6/6 images (100%), done in ")
    assert "imported 6 images" in captured.out
