"""The one exception the codec raises for bad input from the peer."""

from __future__ import annotations

from rexec.protocol.constants import Err


class ProtocolError(Exception):
    """The peer sent bytes that break QAP1.

    ``status`` is the ``Err`` code a server should answer with, so the caller can
    reply without interpreting the message text.
    """

    def __init__(self, message: str, status: int = Err.INV_PAR) -> None:
        super().__init__(message)
        self.status = int(status)
