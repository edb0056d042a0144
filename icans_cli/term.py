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


# C0 and C1 control characters but tab, newline and carriage return: on a terminal they would
# be obeyed (a title change, a cleared screen, a hyperlink), so data shows them as \xNN.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20),
                                       *range(0x7f, 0xa0))}
# undecodable input bytes kept as lone surrogates: shown as the bytes they were
_CONTROLS.update({c: f"\\x{c - 0xdc00:02x}" for c in range(0xdc80, 0xdd00)})


def visible(text: str) -> str:
    """The text with every control character shown as \\xNN (for data on a terminal)."""
    return text.translate(_CONTROLS)


class _Visible:
    """A text stream that writes control characters as \\xNN: data (CSV, JSON lines) printed
    on a terminal is shown literally, never obeyed."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(visible(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class _Utf8:
    """Data for a file or a pipe: UTF-8 bytes and exactly the line endings written, whatever
    the console's code page, PYTHONIOENCODING or the platform's newline translation (a CSV's
    \r\n never becomes \r\r\n on Windows)."""

    def __init__(self, buffer) -> None:
        self._buffer = buffer

    def write(self, text: str) -> int:
        self._buffer.write(text.encode("utf-8", "surrogateescape"))
        return len(text)

    def flush(self) -> None:
        self._buffer.flush()


def data_out():
    """Standard output for data: UTF-8 as it is into a file or a pipe, with control characters
    made visible on a terminal."""
    if is_terminal(sys.stdout):
        return _Visible(sys.stdout)
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        return sys.stdout
    sys.stdout.flush()  # anything written as text before goes first
    return _Utf8(buffer)


class _Captured:
    """Standard output held back for the pager: still a terminal to rich (colours, width)."""

    encoding = "utf-8"

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def text(self) -> str:
        return "".join(self._parts)


def _pager_command() -> str | None:
    import shutil

    cmd = os.environ.get("PAGER")
    if cmd is not None:
        return cmd.strip() or None  # PAGER= (empty) turns paging off
    if shutil.which("less"):
        # colours; quits by itself when it fits; leaves it on screen; says how to go back
        return "less -R -F -X '-Ps-- more\\: space   back\\: q --'"
    return None


def _rows() -> int:
    import shutil

    return shutil.get_terminal_size().lines


from contextlib import contextmanager  # noqa: E402


@contextmanager
def paging():
    """Long output on a terminal goes through a pager ($PAGER, else less); output that fits
    the screen, or output into a file or a pipe, is printed as it is."""
    if not (is_terminal(sys.stdout) and is_terminal(sys.stdin)) \
            or os.environ.get("TERM") in ("dumb", "emacs"):
        yield
        return
    real = sys.stdout
    held = _Captured(real.fileno())
    sys.stdout = held  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = real
        _page(held.text())


def _page(text: str) -> None:
    cmd = _pager_command()
    if cmd is None or text.count("\n") < _rows() - 1:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    import subprocess

    env = dict(os.environ)
    env.setdefault("LESS", "-R")  # a PAGER=less keeps the colours
    sys.stdout.flush()
    try:
        subprocess.run(cmd, shell=True, input=text.encode("utf-8", "replace"), env=env,
                       check=False)
    except (OSError, KeyboardInterrupt):
        sys.stdout.write(text)
        sys.stdout.flush()
