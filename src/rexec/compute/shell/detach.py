"""Detached sessions: the R session outlives its connection until the client re-attaches.

As in Rserve: the reply to detachSession/detachedVoidEval carries a port and a 32-byte
key; the client opens a new TCP connection to that port from the same address and
writes the key (no ID string, no header). Unlike Rserve, the port is bound to the
server's own address (loopback by default), and a session nobody claims within
``session.detach_timeout`` seconds ends, so detached processes cannot pile up.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import socket
import time

log = logging.getLogger("rexec.session")

KEY_LENGTH = 32


class Detached:
    """A listening socket waiting for the owner of ``key`` to come back."""

    def __init__(self, host: str, peer: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.key = secrets.token_bytes(KEY_LENGTH)
        self.peer = peer

    def wait(self, timeout: float) -> socket.socket | None:
        """The re-attached socket, or None once ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                self.listener.settimeout(remaining)
                try:
                    candidate, address = self.listener.accept()
                except TimeoutError:
                    break
                if self._claims(candidate, address[0]):
                    candidate.settimeout(None)
                    candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return candidate
                candidate.close()
            log.warning("detached session not re-attached within %.0fs; ending it", timeout)
            return None
        finally:
            self.listener.close()

    def _claims(self, candidate: socket.socket, address: str) -> bool:
        if address != self.peer:
            log.warning("re-attach from %s refused: the session belongs to %s", address, self.peer)
            return False
        candidate.settimeout(10)
        key = b""
        try:
            while len(key) < KEY_LENGTH:
                chunk = candidate.recv(KEY_LENGTH - len(key))
                if not chunk:
                    return False
                key += chunk
        except OSError:
            return False
        return hmac.compare_digest(key, self.key)
