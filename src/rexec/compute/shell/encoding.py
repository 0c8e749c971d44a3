"""CMD_setEncoding: the string encoding a session speaks on the wire.

R runs in a UTF-8 locale, so ``native`` and ``utf8`` need no work. ``latin1``
(a courtesy for old clients, as in Rserve) re-encodes every string that crosses
the wire; it walks the object in Python, which is fine for the rare client that asks.
"""

from __future__ import annotations

from rexec.protocol.constants import XT
from rexec.protocol.sexp import Sexp

ENCODINGS = {b"native": "utf-8", b"utf8": "utf-8", b"latin1": "latin-1"}


def _recode_body(body: bytes, source: str, target: str) -> bytes:
    out = []
    for item in bytes(body).split(b"\x00")[:-1]:
        if item == b"\xff":  # NA
            out.append(item)
            continue
        escaped = item[:1] == b"\xff"
        text = (item[1:] if escaped else item).decode(source, "replace")
        data = text.encode(target, "replace")
        out.append(b"\xff" + data if data[:1] == b"\xff" else data)
    return b"".join(part + b"\x00" for part in out)


def recode(s: Sexp, source: str, target: str) -> Sexp:
    """A copy of ``s`` whose character vectors (attributes included) are re-encoded."""
    value = s.value
    if s.xt == XT.ARRAY_STR:
        value = _recode_body(value, source, target)
    elif s.xt in (XT.VECTOR, XT.VECTOR_EXP, XT.LIST_NOTAG, XT.LANG_NOTAG):
        value = [recode(item, source, target) for item in value]
    elif s.xt in (XT.LIST_TAG, XT.LANG_TAG):
        value = [(recode(v, source, target), recode(t, source, target)) for v, t in value]
    elif s.xt == XT.CLOS:
        value = tuple(recode(part, source, target) for part in value)
    attr = recode(s.attr, source, target) if s.attr is not None else None
    return Sexp(s.xt, value, attr)
