"""Stage lines of long commands, on stderr: ``  [12,3 с] 2026-12: начисления — строк 1 239 091``.

A command that runs for minutes (``demo``, ``bench``, ``close``, ``payments import``)
says when each coarse stage ends and how long the command has been running; the
results stay on stdout. The command decides whether to report (:func:`wanted`):
``demo`` and ``bench`` always (people run them and wait), ``close`` and ``payments
import`` when stderr is a terminal or ``--progress`` asks for it, so scripts and
cron logs stay as they were.

Stages call :func:`stage` with a finished stage's text; it does nothing unless a
command opened :func:`reporting`. One call per stage, never per account: the hot
loops do not know about this module.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

NBSP = "\u00a0"


def count_text(n: int) -> str:
    """A count with its thousands split the Russian way (no-break spaces).

    >>> count_text(1239091).replace(NBSP, " ")
    '1 239 091'
    """
    return f"{n:,}".replace(",", NBSP)


def plural(n: int, one: str, few: str, many: str) -> str:
    """``n`` with the Russian form of its noun, by CLDR's plural rule for Russian (babel).

    >>> plural(1, "запись", "записи", "записей"), plural(3, "запись", "записи", "записей")
    ('1 запись', '3 записи')
    >>> plural(11, "год", "года", "лет"), plural(21, "год", "года", "лет"), plural(112, "год", "года", "лет")
    ('11 лет', '21 год', '112 лет')
    """
    from babel import Locale

    form = Locale("ru").plural_form(n)
    return f"{n} {one if form == 'one' else few if form == 'few' else many}"


def seconds_text(seconds: float) -> str:
    """Elapsed seconds with one decimal and a comma.

    >>> seconds_text(12.34), seconds_text(0.04)
    ('12,3', '0,0')
    """
    return f"{seconds:.1f}".replace(".", ",")


class Progress:
    """Writes ``  [ELAPSED с] TEXT`` lines, the time counted from the command's start."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.started = time.perf_counter()

    def stage(self, text: str) -> None:
        out = self.stream if self.stream is not None else sys.stderr
        print(f"  [{seconds_text(time.perf_counter() - self.started)} с] {text}", file=out, flush=True)


_current: list[Progress] = []


def stage(text: str) -> None:
    """Report a finished stage of the running command, if it reports (else nothing)."""
    if _current:
        _current[-1].stage(text)


def active() -> bool:
    """Whether the running command reports its stages (to skip counting work for nothing)."""
    return bool(_current)


@contextmanager
def reporting(enabled: bool = True, stream: TextIO | None = None) -> Iterator[None]:
    """Report stages inside the block; nested blocks keep the outer clock (demo → close)."""
    if not enabled or _current:
        yield
        return
    _current.append(Progress(stream))
    try:
        yield
    finally:
        _current.pop()


def wanted(option: bool | None) -> bool:
    """``--progress``/``--no-progress`` when given, else whether stderr is a terminal."""
    if option is not None:
        return option
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
