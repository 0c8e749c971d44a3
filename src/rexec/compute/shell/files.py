"""QAP file commands (openFile ... removeFile), confined to the session's working directory.

As in Rserve there is at most one open file per connection. Unlike Rserve, a name
that resolves (symbolic links included) outside the working directory is refused
with ERR_accessDenied.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from rexec.protocol.constants import Err
from rexec.protocol.errors import ProtocolError

DEFAULT_READ = 32768
MAX_READ = 16 * 1024 * 1024


class SessionFiles:
    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.current: BinaryIO | None = None

    def resolve(self, name: bytes) -> str:
        """``name`` as a path relative to the working directory (the shell's cwd), with
        every symbolic link followed by hand; ERR_accessDenied if it leaves the directory.

        Resolution never uses the absolute path: the shell's account may not be allowed to
        walk the working directory's parents, and a resolver that cannot read a link
        must not take it for a plain name.
        """
        text = os.fsdecode(bytes(name))
        parts: list[str] = []
        pending = self._inside(text).split("/")
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    self._deny(text)
                parts.pop()
                continue
            candidate = "/".join([*parts, part])
            if os.path.islink(candidate):
                hops += 1
                if hops > 40:
                    self._deny(text)
                pending = self._inside(os.readlink(candidate), base=parts).split("/") + pending
                parts = []
                continue
            parts.append(part)
        if not parts:
            self._deny(text)
        return "/".join(parts)

    def _inside(self, target: str, base: list[str] | None = None) -> str:
        """A link target or client name as a path relative to the working directory."""
        if target.startswith("/"):
            if target != self.root and not target.startswith(self.root + "/"):
                self._deny(target)
            return target[len(self.root) + 1 :]
        return "/".join([*(base or []), target])

    def _deny(self, text: str) -> None:
        raise ProtocolError(f"path outside the session directory: {text!r}", Err.ACCESS_DENIED)

    def open(self, name: bytes, *, create: bool) -> None:
        path = self.resolve(name)
        self.close()
        try:
            self.current = open(path, "wb" if create else "rb")  # noqa: SIM115 (kept open)
        except OSError as exc:
            raise ProtocolError(str(exc), Err.IO_ERROR) from exc

    def read(self, size: int | None) -> bytes:
        handle = self._handle()
        if size is None or size < 0:
            size = DEFAULT_READ
        try:
            return handle.read(min(size, MAX_READ))
        except OSError:  # e.g. opened for writing: Rserve's fread() reads nothing
            return b""

    def write(self, data: memoryview) -> None:
        try:
            self._handle().write(data)
        except OSError as exc:
            raise ProtocolError(str(exc), Err.IO_ERROR) from exc

    def remove(self, name: bytes) -> None:
        path = self.resolve(name)
        try:
            os.remove(path)
        except OSError as exc:
            raise ProtocolError(str(exc), Err.IO_ERROR) from exc

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def _handle(self) -> BinaryIO:
        if self.current is None:
            raise ProtocolError("no open file", Err.NOT_OPEN)
        return self.current
