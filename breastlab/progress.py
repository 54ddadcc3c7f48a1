"""Progress of long jobs: a tqdm bar when stderr is a terminal, else a short line on stderr at the start, at most
every ``every_s`` seconds and at the end, with the count, the share done, the time taken and an ETA.

``progress(iterable, desc)`` wraps a loop; ``EngineProgress(desc).attach(engine)`` follows an ignite engine's run
(``Bundle.train`` attaches it to a bundle's trainer and evaluators)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

from ignite.engine import Engine, Events
from tqdm import tqdm

EVERY_S = 30.0  # seconds between two lines when not on a terminal

T = TypeVar("T")


class Progress:
    """Counts the items done of ``total`` (``None``: unknown). On a terminal (``tty``, default: ``stream.isatty()``)
    a tqdm bar; otherwise lines on ``stream`` (default: stderr): one at the start when ``announce``, one whenever
    ``every_s`` seconds of ``clock`` have passed since the last, and one at the end when any came before."""

    def __init__(self, total: int | None, desc: str, unit: str = "image", every_s: float = EVERY_S,
                 stream: TextIO | None = None, tty: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 announce: bool = True, leave: bool = True):
        self.stream = stream or sys.stderr
        self.total, self.desc, self.unit, self.every_s, self.clock = total, desc, unit, every_s, clock
        self.done, self.note, self.lines, self.closed = 0, "", 0, False
        self.start = self.last = clock()
        tty = self.stream.isatty() if tty is None else tty
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=leave) if tty else None
        if announce and self.bar is None:
            self._write(f"{desc}: {total} {unit}s" if total is not None else f"{desc}: started")

    def update(self, n: int = 1, note: str | None = None) -> None:
        """``n`` more items done; ``note`` (e.g. the epoch) is shown with the count. Closes at ``total``."""
        self.done += n
        self.note = self.note if note is None else note
        if self.bar is not None:
            self.bar.set_postfix_str(self.note, refresh=False)
            self.bar.update(n)
        if self.total is not None and self.done >= self.total:
            self.close()
        elif self.bar is None and self.clock() - self.last >= self.every_s:
            self._write(self.status())

    def close(self) -> None:
        """End the bar, or write the last line (when a line came before)."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            self._write(self.status(final=True))

    def status(self, final: bool = False) -> str:
        """``desc: done/total units (share), note, time elapsed, ETA``; at the end the time taken instead."""
        elapsed = self.clock() - self.start
        count = f"{self.done}/{self.total} {self.unit}s ({100 * self.done // max(self.total, 1)}%)" \
            if self.total is not None else f"{self.done} {self.unit}s"
        parts = [f"{self.desc}: {count}", *filter(None, [self.note])]
        if final:
            return ", ".join([*parts, f"done in {duration(elapsed)}"])
        parts.append(f"{duration(elapsed)} elapsed")
        if self.total is not None and 0 < self.done < self.total:
            parts.append(f"ETA {duration(elapsed / self.done * (self.total - self.done))}")
        return ", ".join(parts)

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self.lines += 1
        self.last = self.clock()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, **options) -> Iterator[T]:
    """Yield the items of ``iterable`` while showing a ``Progress`` (``total``: its length where it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    shown = Progress(total, desc, **options)
    try:
        for item in iterable:
            yield item
            shown.update()
    finally:
        shown.close()


class EngineProgress:
    """A ``Progress`` over the iterations of each run of an ignite engine (every epoch left), with the epoch as its
    note when ``epochs``; ``options`` as ``Progress``'s (``unit`` defaults to ``iteration``)."""

    def __init__(self, desc: str, epochs: bool = True, **options):
        self.desc, self.epochs, self.options = desc, epochs, {"unit": "iteration", **options}
        self.shown: Progress | None = None

    def attach(self, engine: Engine) -> EngineProgress:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)
        return self

    def started(self, engine: Engine) -> None:
        self.completed(engine)  # a run that raised left its progress open
        state = engine.state
        total = (state.max_epochs - state.epoch) * state.epoch_length if state.epoch_length else None
        self.shown = Progress(total, self.desc, **self.options)

    def iteration_completed(self, engine: Engine) -> None:
        if self.shown is not None:
            note = f"epoch {engine.state.epoch}/{engine.state.max_epochs}" if self.epochs else None
            self.shown.update(note=note)

    def completed(self, engine: Engine) -> None:
        if self.shown is not None:
            self.shown.close()
            self.shown = None


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
