"""The one JSON reader for what clients send and for what the datastore index reads back.

It is total: any text gives a value or a :class:`JSONRefused` that says what is wrong, never another exception. A value
is taken when it nests at most ``MAX_DEPTH`` levels and holds at most ``MAX_ITEMS`` values, every number is finite with
at most ``MAX_DIGITS`` digits (so that it converts to a float) and no string holds a lone surrogate (``"\\ud800"``:
not text, and not writable as UTF-8)."""

from __future__ import annotations

import json
import math
import re

MAX_BYTES = 64 * 1024
MAX_DEPTH = 8
MAX_ITEMS = 4096
MAX_DIGITS = 100
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a valid pair is decoded to one character, so any left is alone


class JSONRefused(ValueError):
    """JSON that the reader does not take; the message says what is wrong."""


class RefusedNumber(str):
    """A number literal that :func:`check` refuses (too many digits, or not finite: ``1e400``, ``NaN``), kept as its
    text: one such number never stops the parse of a whole index, and a quarantined entry keeps it."""


def _number(kind):
    def parse(text: str):
        if len(text.lstrip("-")) > MAX_DIGITS:
            return RefusedNumber(text)
        value = kind(text)
        return value if kind is int or math.isfinite(value) else RefusedNumber(text)
    return parse


_DECODER = json.JSONDecoder(parse_int=_number(int), parse_float=_number(float), parse_constant=RefusedNumber)


def parse(text: str):
    """``text`` as a JSON value, with the numbers :func:`check` refuses as :class:`RefusedNumber`; no bounds."""
    try:
        return _DECODER.decode(text)
    except RecursionError as e:
        raise JSONRefused("is nested too deep to read") from e
    except ValueError as e:
        raise JSONRefused(f"is not valid JSON: {str(e)[:200]}") from e


def check(value, what: str, depth: int | None = MAX_DEPTH, items: int | None = MAX_ITEMS) -> None:
    """:class:`JSONRefused` when ``value`` nests deeper than ``depth`` or holds more than ``items`` values (``None``:
    unbounded), or holds a refused number or a string (key or value) with a lone surrogate."""
    stack, count = [(value, 1)], 0
    while stack:
        node, level = stack.pop()
        count += 1
        if (depth and level > depth) or (items and count > items):
            raise JSONRefused(f"{what} nests deeper than {depth} levels or holds more than {items} values")
        if isinstance(node, RefusedNumber):
            raise JSONRefused(f"{what} holds the number {node[:20]}{'...' if len(node) > 20 else ''}: numbers must "
                              f"be finite, with at most {MAX_DIGITS} digits")
        strings = [node] if isinstance(node, str) else list(node) if isinstance(node, dict) else ()
        if any(isinstance(s, str) and _LONE_SURROGATE.search(s) for s in strings):
            raise JSONRefused(f"{what} holds a lone surrogate (\\ud800-\\udfff), which is not text")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, level + 1) for child in children)


def read(text: str, what: str) -> object:
    """``text`` parsed and checked with the bounds of a request: at most ``MAX_BYTES`` characters, then as
    :func:`check`; :class:`JSONRefused` saying what is wrong otherwise."""
    if len(text) > MAX_BYTES:
        raise JSONRefused(f"{what} is {len(text)} characters; at most {MAX_BYTES} are accepted")
    try:
        value = parse(text)
    except JSONRefused as e:
        raise JSONRefused(f"{what} {e}") from e
    check(value, what)
    return value
