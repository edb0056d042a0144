"""Consoles: results to stdout, prompts/progress/errors to stderr. Colour only on a terminal;
NO_COLOR honoured (rich does both)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported only when something is rendered (startup time)
    from rich.console import Console


def _width() -> int | None:
    cols = os.environ.get("COLUMNS")
    if cols and cols.isdigit():
        return int(cols)
    return None


def out() -> "Console":
    from rich.console import Console

    class _Out(Console):
        def on_broken_pipe(self) -> None:
            # rich's own handler exits 1 in silence; the commands' handler exits 141 (as
            # icans grade does) and quiets stdout
            raise BrokenPipeError

    return _Out(highlight=False, soft_wrap=False, width=_width() if not sys.stdout.isatty()
                else None)


def err() -> "Console":
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=_width() if not sys.stderr.isatty()
                   else None)


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


_ESCAPES = None


def plain(value: object) -> str:
    """Text from input or the log, safe to show on a terminal: terminal escape sequences and
    control characters removed (each control character becomes a visible '?'). Always show it
    through rich's Text, never as markup."""
    global _ESCAPES
    if _ESCAPES is None:
        import re

        # CSI, OSC (ended by BEL or ST), other ESC sequences, then any C0/C1 control or DEL
        _ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|"
                              r"\x1b[@-Z\\-_]|[\x00-\x1f\x7f-\x9f]")
    text = "" if value is None else str(value)
    return _ESCAPES.sub("?", text) if _ESCAPES.search(text) else text
