"""QAP1 numbers: commands, response codes, error statuses, parameter and SEXP types.

Values follow Rserve's ``Rsrv.h`` as documented in the project's protocol reference.
"""

from __future__ import annotations

from enum import IntEnum


class Cmd(IntEnum):
    """Request command codes (the low bits of the request command word)."""

    LOGIN = 0x001
    VOID_EVAL = 0x002
    EVAL = 0x003
    SHUTDOWN = 0x004
    SWITCH = 0x005
    KEY_REQ = 0x006
    SEC_LOGIN = 0x007
    OC_CALL = 0x00F
    OPEN_FILE = 0x010
    CREATE_FILE = 0x011
    CLOSE_FILE = 0x012
    READ_FILE = 0x013
    WRITE_FILE = 0x014
    REMOVE_FILE = 0x015
    SET_SEXP = 0x020
    ASSIGN_SEXP = 0x021
    DETACH_SESSION = 0x030
    DETACHED_VOID_EVAL = 0x031
    ATTACH_SESSION = 0x032
    CTRL_EVAL = 0x042
    CTRL_SHUTDOWN = 0x044
    CTRL_SOURCE = 0x045
    CANCEL = 0x046  # deployr-rserve: interrupt the evaluation of another session (DT_INT pid)
    # rexec's own (Rserve answers them ERR_inv_cmd): named pools, see
    # rexec.compute.supervisor.pools. Answered by the server before a connection has a shell.
    USE_POOL = 0x0E1
    DEFINE_POOL = 0x0E2
    REMOVE_POOL = 0x0E3
    POOL_STATUS = 0x0E4
    SET_BUFFER_SIZE = 0x081
    SET_ENCODING = 0x082
    SER_EVAL = 0x0F5
    SER_ASSIGN = 0x0F6
    SER_EEVAL = 0x0F7


#: rexec's pool commands (not Rserve's).
POOL_COMMANDS = frozenset({Cmd.USE_POOL, Cmd.DEFINE_POOL, Cmd.REMOVE_POOL, Cmd.POOL_STATUS})

CMD_RESP = 0x10000
RESP_OK = CMD_RESP | 0x0001
RESP_ERR = CMD_RESP | 0x0002
OOB_SEND = 0x21000
OOB_MSG = 0x22000


def is_special(cmd: int) -> bool:
    """True for commands whose payload is one raw byte string, not a parameter list."""
    return (cmd & 0xF0) == 0xF0


class Err(IntEnum):
    """Error statuses carried in bits 24-30 of a RESP_ERR command word."""

    PARSE_NULL = 0
    SER_ERROR = 1  # serEval/serAssign/serEEval: R error
    PARSE_INCOMPLETE = 2
    PARSE_ERROR = 3
    PARSE_EOF = 4
    NOT_SERIALIZABLE = 126
    R_ERROR = 127  # eval/voidEval: uncaught R error or interrupt
    AUTH_FAILED = 0x41
    CONN_BROKEN = 0x42
    INV_CMD = 0x43
    INV_PAR = 0x44
    R_ERR = 0x45
    IO_ERROR = 0x46
    NOT_OPEN = 0x47
    ACCESS_DENIED = 0x48
    UNSUPPORTED_CMD = 0x49
    UNKNOWN_CMD = 0x4A
    DATA_OVERFLOW = 0x4B
    OBJECT_TOO_BIG = 0x4C
    OUT_OF_MEM = 0x4D
    CTRL_CLOSED = 0x4E
    SESSION_BUSY = 0x50
    DETACH_FAILED = 0x51
    DISABLED = 0x61
    UNAVAILABLE = 0x62
    CRYPT_ERROR = 0x63
    SECURITY_CLOSE = 0x64


def error_status(cmd_word: int) -> int:
    """The 7-bit status of a RESP_ERR command word."""
    return (cmd_word >> 24) & 0x7F


class DT(IntEnum):
    """Parameter types in a message payload."""

    INT = 1
    CHAR = 2
    DOUBLE = 3
    STRING = 4
    BYTESTREAM = 5
    SEXP = 10
    ARRAY = 11
    CUSTOM = 32


DT_LARGE = 0x40


class XT(IntEnum):
    """SEXP base types (the low six bits of an object header)."""

    NULL = 0
    INT = 1
    DOUBLE = 2
    STR = 3
    LANG = 4
    SYM = 5
    BOOL = 6
    S4 = 7
    VECTOR = 16
    LIST = 17
    CLOS = 18
    SYMNAME = 19
    LIST_NOTAG = 20
    LIST_TAG = 21
    LANG_NOTAG = 22
    LANG_TAG = 23
    VECTOR_EXP = 26
    VECTOR_STR = 27
    ARRAY_INT = 32
    ARRAY_DOUBLE = 33
    ARRAY_STR = 34
    ARRAY_BOOL_UA = 35
    ARRAY_BOOL = 36
    RAW = 37
    ARRAY_CPLX = 38
    UNKNOWN = 48


XT_LARGE = 0x40
XT_HAS_ATTR = 0x80

#: Objects whose body exceeds this many bytes get the 8-byte (large) header, as in Rserve.
LARGE_THRESHOLD = 0xFFFFF0

NA_INTEGER = -(2**31)
#: R's NA_real_: a NaN whose low word is 1954.
NA_REAL_BYTES = bytes.fromhex("a20700000000f07f")
NA_STRING_BYTE = 0xFF
NA_LOGICAL_BYTE = 2

ID_STRING_LENGTH = 32
HEADER_LENGTH = 16
MAX_PARAMS = 16
DEFAULT_PORT = 6311
