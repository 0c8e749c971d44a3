"""rexec's Python client for QAP1 (Rserve) servers, blocking and asyncio.

>>> import rexec.client
>>> with rexec.client.connect(port=6311) as r:
...     r.assign("x", [1.5, 2.5])
...     r.eval("sum(x)")
4.0

Both connection classes run the same sans-I/O operations (``_core``) over
:mod:`rexec.protocol`; values are converted by :mod:`rexec.client.convert`.
"""

from rexec.client._async import AsyncConnection, aconnect
from rexec.client._core import ClientError, ConnectionLost, RError
from rexec.client._sync import Connection, connect, define_pool, pool_status, remove_pool
from rexec.protocol import Sexp, Symbol

__all__ = [
    "AsyncConnection",
    "ClientError",
    "Connection",
    "ConnectionLost",
    "RError",
    "Sexp",
    "Symbol",
    "aconnect",
    "connect",
    "define_pool",
    "pool_status",
    "remove_pool",
]
