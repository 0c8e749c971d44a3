"""Named pools beside the default one: a template of their own that ran their own
start-up code once (a published service's model), and their own shells.

A compute node always has its default pool, which serves ordinary QAP connections
exactly as before. Named pools are defined, listed and removed over QAP with rexec's
own commands (``POOL_COMMANDS``), by an authenticated user only, and a connection asks
for one with ``CMD_usePool`` before its first ordinary request; a plain Rserve
client never sends these and sees no change. Which pool a connection's shell comes from
is decided here, in the process that holds the truth, never by a shell.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rexec.compute.channel import MAX_TEXT
from rexec.compute.identity import shell_identity, shell_root
from rexec.config import Config
from rexec.protocol.constants import POOL_COMMANDS

__all__ = ["MAX_DEFINITION", "POOL_COMMANDS", "PoolSpec", "PoolSpecError"]
#: Largest pool definition (its start-up code travels to the template on its command line).
MAX_DEFINITION = MAX_TEXT
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}")


class PoolSpecError(ValueError):
    """A pool definition that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class PoolSpec:
    name: str
    init: str  # R code the pool's template runs once, after the node's own start-up code
    initial: int
    max: int
    #: A file the template may read before ``init`` (the definition's data), or None.
    data: Path | None = None

    @classmethod
    def parse(cls, text: bytes, config: Config) -> PoolSpec:
        """A definition sent as JSON: ``{"name", "init", "initial", "max"}``."""
        if len(text) > MAX_DEFINITION:
            raise PoolSpecError(f"a pool definition is at most {MAX_DEFINITION} bytes")
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PoolSpecError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or not set(data) <= {"name", "init", "initial", "max"}:
            raise PoolSpecError("expected an object with name, init, initial and max")
        name, init = data.get("name"), data.get("init", "")
        initial, most = data.get("initial", 1), data.get("max", 4)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PoolSpecError(f"name must match {NAME.pattern}")
        if not isinstance(init, str):
            raise PoolSpecError("init must be a string of R code")
        for field, value in (("initial", initial), ("max", most)):
            if type(value) is not int or value < 0:
                raise PoolSpecError(f"{field} must be a non-negative integer")
        if not 1 <= most <= config["pool.max"] or initial > most:
            raise PoolSpecError(f"need 0 <= initial <= max <= pool.max ({config['pool.max']})")
        return cls(name, init, initial, most)

    def config(self, base: Config) -> Config:
        """The node's configuration for this pool's template and shells."""
        values = base.to_dict()
        prelude = [f".rexec_pool_data <- {json.dumps(str(self.data))}"] if self.data else []
        code = [*prelude, *([self.init] if self.init else [])]
        values["startup.eval"] = [*base["startup.eval"], *code]
        values["pool.initial"] = self.initial
        values["pool.max"] = self.max
        return Config(values)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "initial": self.initial, "max": self.max}

    def with_data(self, data: bytes, config: Config) -> PoolSpec:
        """This definition with ``data`` staged for its template: a new file of an
        unguessable name in the shell account's directory, readable by that account only
        (made with O_EXCL|O_NOFOLLOW: the directory is the shells' own, and a shell may
        have planted links in it). Its path is ``.rexec_pool_data`` in R before ``init``
        runs; :meth:`discard_data` removes it once the template has started."""
        path = shell_root(config) / f"pooldata-{secrets.token_hex(16)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o400)
        try:
            identity = shell_identity(config)
            if identity is not None:
                os.fchown(fd, identity.uid, identity.gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return replace(self, data=path)

    def discard_data(self) -> None:
        if self.data is not None:
            self.data.unlink(missing_ok=True)
