"""Sans-I/O QAP1 (Rserve) protocol: pure functions and small classes over bytes.

The server, the Python client and the benchmarks share this codec; nothing here
touches a socket or R. :mod:`rexec.protocol.values` holds the one set of rules for R
values as Python and JSON values; ``to_python`` is its function, loaded on first use
(it needs numpy, which the compute node itself never imports).
"""

from typing import Any

from rexec.protocol.codec import (
    Symbol,
    decode_sexp,
    decode_strings,
    encode_sexp,
    encode_strings,
    from_python,
)
from rexec.protocol.constants import (
    DT,
    OOB_MSG,
    OOB_SEND,
    RESP_ERR,
    RESP_OK,
    XT,
    Cmd,
    Err,
    error_status,
    is_special,
)
from rexec.protocol.errors import ProtocolError
from rexec.protocol.framing import (
    Frame,
    FrameBuffer,
    Header,
    IdInfo,
    error,
    id_string,
    message,
    ok,
    pack_header,
    parse_id_string,
    request,
    response,
    unpack_header,
)
from rexec.protocol.params import (
    Param,
    bytes_param,
    decode_params,
    encode_params,
    int_param,
    sexp_param,
    string_param,
)
from rexec.protocol.sexp import NULL, Sexp

__all__ = [
    "DT",
    "NULL",
    "OOB_MSG",
    "OOB_SEND",
    "RESP_ERR",
    "RESP_OK",
    "XT",
    "Cmd",
    "Err",
    "Frame",
    "FrameBuffer",
    "Header",
    "IdInfo",
    "Param",
    "ProtocolError",
    "Sexp",
    "Symbol",
    "bytes_param",
    "decode_params",
    "decode_sexp",
    "decode_strings",
    "encode_params",
    "encode_sexp",
    "encode_strings",
    "error",
    "error_status",
    "from_python",
    "id_string",
    "int_param",
    "is_special",
    "message",
    "ok",
    "pack_header",
    "parse_id_string",
    "request",
    "response",
    "sexp_param",
    "string_param",
    "to_python",
    "unpack_header",
]


def __getattr__(name: str) -> Any:
    if name == "to_python":
        from rexec.protocol.values import to_python

        return to_python
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
