"""The user docs stay true: the shell blocks of README.md and docs/*.md marked runnable run, the README's CLI block
names every subcommand and flag of ``breastlab``, relative links resolve, and the README stays short.

Marking (in the fence's info string; GitHub highlights by its first word only):

- ```` ```bash runnable ````: run with bash (``set -euo pipefail``) from a private working copy of the project (its
  top-level entries linked, ``runs/`` and ``studies/`` fresh), ``.venv/bin`` first on ``PATH``, ``TMPDIR`` private;
- ```` ```bash runnable server ````: the same against a real server on the shipped samples, every
  ``http://127.0.0.1:8000`` (what ``make serve`` prints) replaced by that server's URL;
- ```` ```text cli ````: the README's synopsis of ``breastlab``.

In both runnable kinds ``curl`` fails on an HTTP error (``--fail-with-body``), so a route that drifts fails here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from breastlab.bundle import PROJECT_ROOT
from breastlab.cli import _parser

from helpers import sample_server

README = PROJECT_ROOT / "README.md"
USER_DOCS = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINKING_DOCS = [*USER_DOCS, PROJECT_ROOT / "CONTRIBUTING.md", PROJECT_ROOT / "slicer_extension" / "README.md",
                *sorted(PROJECT_ROOT.glob("bundles/*/docs/README.md"))]
SERVE_URL = "http://127.0.0.1:8000"
TAGS = {"runnable", "server", "cli"}
PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body --show-error --max-time 120 "$@"; }\n'


class Block(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    tags: frozenset
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(PROJECT_ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file (fences at the start of a line)."""
    blocks, opening, body = [], None, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if opening is None and line.startswith("```"):
            opening, body = (number, line[3:].split()), []
        elif opening is not None and line.rstrip() == "```":
            words = opening[1] or [""]
            blocks.append(Block(path, opening[0], words[0], frozenset(words[1:]), "\n".join(body) + "\n"))
            opening = None
        elif opening is not None:
            body.append(line)
    assert opening is None, f"{path}:{opening[0]}: code block never closed"
    return blocks


def runnable(server: bool) -> list:
    blocks = [b for path in USER_DOCS for b in code_blocks(path)
              if "runnable" in b.tags and ("server" in b.tags) == server]
    return [pytest.param(b, id=b.where) for b in blocks]


def working_copy(tmp_path: Path) -> Path:
    """A folder that reads like the project root, each top-level entry a link to the real one, with its own empty
    ``runs/`` and no ``studies/``, so the commands' outputs stay under ``tmp_path``."""
    copy = tmp_path / "project"
    copy.mkdir()
    for entry in PROJECT_ROOT.iterdir():
        if entry.name not in {".git", "runs", "studies"}:
            (copy / entry.name).symlink_to(entry)
    (copy / "runs").mkdir()
    return copy


def run_block(block: Block, tmp_path: Path, text: str | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "TMPDIR": str(tmp_path / "tmp")}
    result = subprocess.run(["bash", "-c", PRELUDE + (text or block.text)], cwd=working_copy(tmp_path), env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"{block.where} failed ({result.returncode}):\n{block.text}\n"
                                    f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
    return result


@pytest.mark.slow
@pytest.mark.parametrize("block", runnable(server=False))
def test_a_runnable_block_runs(block, tmp_path):
    run_block(block, tmp_path)


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("docs_server")) as server:
        yield server


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("block", runnable(server=True))
def test_a_runnable_server_block_runs_against_a_real_server(block, docs_server, tmp_path):
    assert SERVE_URL in block.text, f"{block.where}: a server block must call {SERVE_URL}"
    run_block(block, tmp_path, block.text.replace(SERVE_URL, docs_server.url))


def test_the_docs_have_runnable_blocks_and_only_known_tags():
    blocks = [b for path in USER_DOCS for b in code_blocks(path)]
    unknown = {b.where: sorted(b.tags - TAGS) for b in blocks if b.tags - TAGS}
    assert not unknown, f"unknown code block tags (known: {sorted(TAGS)}): {unknown}"
    assert all(b.language == "bash" for b in blocks if "runnable" in b.tags)
    in_readme = [b.tags for b in code_blocks(README) if "runnable" in b.tags]
    assert {"runnable"} in in_readme and {"runnable", "server"} in in_readme


def test_the_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


def cli_synopsis() -> dict[str, str]:
    """The README's ```text cli``` block: each ``breastlab COMMAND`` line with its indented continuation lines."""
    blocks = [b for b in code_blocks(README) if "cli" in b.tags]
    assert len(blocks) == 1, "the README needs exactly one ```text cli block"
    commands, current = {}, None
    for line in blocks[0].text.splitlines():
        if match := re.match(r"breastlab (\S+(?: [a-z]+)?)(.*)", line):
            current = match[1]
            commands[current] = match[2]
        elif line.strip():
            assert line.startswith(" ") and current, f"unexpected line in the CLI block: {line!r}"
            commands[current] += " " + line.strip()
    return commands


def subcommands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Each command's parser by its words (``train``, ``bundle export``)."""
    action = next(a for a in (parser or _parser())._actions if isinstance(a, argparse._SubParsersAction))
    found = {}
    for name, sub in action.choices.items():
        nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
        found.update(subcommands(sub, f"{prefix}{name} ") if nested else {f"{prefix}{name}": sub})
    return found


def test_the_readme_cli_block_names_every_subcommand_positional_and_flag():
    synopsis, parsers = cli_synopsis(), subcommands()
    assert sorted(synopsis) == sorted(parsers), "subcommands in the README's CLI block vs breastlab.cli._parser()"
    for name, parser in parsers.items():
        text = synopsis[name]
        options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        expected = {s for a in options for s in a.option_strings}
        written = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))
        assert written == expected, f"breastlab {name}: flags in the README's CLI block vs the parser"
        for action in options:
            flag = next(s for s in action.option_strings if s in text)
            at = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text).start()
            bracketed = text[:at].count("[") > text[:at].count("]")
            assert bracketed != action.required, f"breastlab {name} {flag}: required iff not in [brackets]"
        positionals = [a.dest for a in parser._actions if not a.option_strings]
        leading = re.match(r"\s*([^\[\-]*)", text)[1].split()
        assert len(leading) == len(positionals), f"breastlab {name}: positionals {leading} vs {positionals}"


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings (lower case, punctuation dropped, spaces to hyphens)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    headings = re.findall(r"^#+\s+(.*?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", LINKING_DOCS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # links in code blocks are code
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(target)
    assert not broken, f"{path.relative_to(PROJECT_ROOT)}: broken links {broken}"
