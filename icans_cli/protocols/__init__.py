"""Built-in management protocols, shipped as JSON data beside this file.

Loading reads package data, so it lives here rather than in the pure core; the core's
``Protocol.from_dict`` validates what is read.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from icans_cli.core.protocol import Protocol

BUILTIN = ("asco-2021", "cartox-2018")
DEFAULT = "asco-2021"


class UnknownProtocol(LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown protocol {name!r} (built in: {', '.join(BUILTIN)})")


@lru_cache(maxsize=None)
def load(name: str = DEFAULT) -> Protocol:
    if name not in BUILTIN:
        raise UnknownProtocol(name)
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return Protocol.from_dict(json.loads(text))
