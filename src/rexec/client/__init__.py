"""rexec's Python client for QAP1 (Rserve) servers, blocking and asyncio.

>>> import rexec.client
>>> with rexec.client.connect(port=6311) as r:
...     r.assign("x", [1.5, 2.5])
...     r.eval("sum(x)")
4.0

Both connection classes run the same sans-I/O operations (``_core``) over
:mod:`rexec.protocol`; values are converted by :mod:`rexec.client.convert`.
"""

from rexec.client._async import AsyncConnection, aattach, aconnect
from rexec.client._core import ClientError, ConnectionLost, RError, SessionGone
from rexec.client._sync import Connection, connect, define_pool, pool_status, remove_pool
from rexec.protocol import Sexp, Symbol

#: The web node's client, :mod:`rexec.client.web` (published services over REST).
_WEB = ("BatchError", "Service", "ServiceError", "ServiceInfo", "ServiceResult")
_WEB += ("WebClient", "WebError", "login")


def __getattr__(name: str) -> object:
    """The web client (:mod:`rexec.client.web`), imported on first use: httpx is not
    loaded for QAP connections."""
    if name in _WEB:
        from rexec.client import web

        return getattr(web, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncConnection",
    "ClientError",
    "Connection",
    "ConnectionLost",
    "RError",
    "SessionGone",
    "Sexp",
    "Symbol",
    "aattach",
    "aconnect",
    "connect",
    "define_pool",
    "pool_status",
    "remove_pool",
    *_WEB,
]
