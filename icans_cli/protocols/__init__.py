"""Management protocols: the built-in ones, shipped as JSON beside this file, or a centre's own
protocol file (`--protocol FILE`, or `$ICANS_PROTOCOL`).

Loading reads files, so it lives here rather than in the pure core; the core's
``Protocol.from_dict`` validates what is read and names every bad field. Each loaded protocol
carries the SHA-256 of its file, recorded in the log with its id and version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from icans_cli.core.protocol import Protocol, ProtocolError

BUILTIN = ("asco-2021", "cartox-2018")
DEFAULT = "asco-2021"
ENV = "ICANS_PROTOCOL"


class UnknownProtocol(LookupError):
    def __init__(self, name: str, why: str = "") -> None:
        self.name = name
        super().__init__(why or f"unknown protocol {name!r} (built in: {', '.join(BUILTIN)}; "
                                "or give a protocol file's path)")


def default_name() -> str:
    import os

    return os.environ.get(ENV) or DEFAULT


def builtin_bytes(name: str) -> bytes:
    if name not in BUILTIN:
        raise UnknownProtocol(name)
    return resources.files(__name__).joinpath(f"{name}.json").read_bytes()


def parse(data: bytes, where: str) -> Protocol:
    """A protocol from a file's bytes; ProtocolError names what is wrong and where."""
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ProtocolError(f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{where}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
                            f"{exc.msg}") from None
    if (where not in BUILTIN and isinstance(raw, dict) and raw.get("id") in BUILTIN
            and data != builtin_bytes(raw["id"])):
        # a changed copy under a built-in id would be indistinguishable on screens and in logs
        raise ProtocolError(f"{where}: id {raw['id']!r} is a built-in protocol's: give your "
                            f"protocol its own id (e.g. '{raw['id']}-ward7') so that records "
                            "and screens can tell the two apart")
    protocol = Protocol.from_dict(raw)
    return replace(protocol, sha256=hashlib.sha256(data).hexdigest(),
                   source_file=None if where in BUILTIN else where)


MAX_PROTOCOL_BYTES = 4 << 20


def read_file(path: Path) -> bytes:
    """A protocol file's bytes: only a regular file (a FIFO or a device would hang the read or
    never end), and at most 4 MB. OSError with what is wrong."""
    import errno
    import os
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, "it is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file (a pipe or a device)")
        if st.st_size > MAX_PROTOCOL_BYTES:
            raise OSError(errno.EFBIG, "it is larger than 4 MB: not a protocol file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_PROTOCOL_BYTES:
                raise OSError(errno.EFBIG, "it is larger than 4 MB: not a protocol file")
        return b"".join(chunks)
    finally:
        os.close(fd)


def is_file(name: str) -> bool:
    return name not in BUILTIN and (name.endswith(".json") or "/" in name or "\\" in name
                                    or Path(name).is_file())


@lru_cache(maxsize=None)
def load(name: str = DEFAULT) -> Protocol:
    """A built-in protocol by name, or a protocol file by its path."""
    if not is_file(name):
        return parse(builtin_bytes(name), name)
    path = Path(name).expanduser()
    try:
        data = read_file(path)
    except FileNotFoundError:
        raise UnknownProtocol(name, f"no protocol file at {name} (built in: "
                                    f"{', '.join(BUILTIN)})") from None
    except OSError as exc:
        raise UnknownProtocol(name, f"cannot read the protocol file {name}: "
                                    f"{exc.strerror}") from None
    try:
        where = str(path.resolve())  # records name it wherever `icans show` is run from
    except OSError:
        where = str(path.absolute())
    return parse(data, where)
