"""The compute node's local control socket: ``rexec status`` (and tools on the same
machine) ask the running server about its pool. A Unix socket, mode 0600, in the
working-directory root: only the server's own user (and root) can use it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
from pathlib import Path
from typing import Any

from rexec.compute.supervisor.pool import Pool
from rexec.config import Config


def socket_path(config: Config) -> Path:
    return config.workdir / f"control-{config['server.port']}.sock"


class ControlServer:
    def __init__(self, config: Config, pool: Pool) -> None:
        self.path = socket_path(config)
        self.pool = pool
        self.named: dict[str, Pool] = {}  # the server's named pools (the same dict)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(json.loads(line))).encode() + b"\n")
                await writer.drain()
        except (ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "status":
            return {
                "ok": True,
                "pool": dataclasses.asdict(self.pool.stats()),
                "mode": self.pool.mode,
                "pools": {n: dataclasses.asdict(p.stats()) for n, p in self.named.items()},
            }
        return {"ok": False, "error": f"unknown op {request.get('op')!r}"}


def query(config: Config, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Ask a running server (blocking); raises OSError when none is listening."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path(config)))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
