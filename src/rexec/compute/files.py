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
        """The real path of ``name`` inside the working directory, or ERR_accessDenied."""
        text = os.fsdecode(bytes(name))
        path = os.path.realpath(os.path.join(self.root, text))
        if not text or os.path.commonpath([self.root, path]) != self.root or path == self.root:
            raise ProtocolError(f"path outside the session directory: {text!r}", Err.ACCESS_DENIED)
        return path

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
