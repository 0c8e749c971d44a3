"""CMD_setEncoding: how a session's strings cross the wire, as in Rserve.

Strings from the client keep their bytes and are marked with the session's encoding
(:meth:`rexec.rshell.shell.RShell.set_string_encoding`): ``native``, the default, leaves
them unmarked (``Encoding()`` says "unknown"; R's locale is UTF-8), ``utf8`` marks them
UTF-8 and ``latin1`` latin1. R translates them where it must (the parser turns a latin1
text into UTF-8), so nothing is converted here on the way in.

Strings going to the client are sent in the session's encoding. R's strings are UTF-8
here, so ``native`` and ``utf8`` need no work; ``latin1`` (a courtesy for old clients)
re-encodes every string as Rserve does through R's ``reEnc``: what latin1 cannot
represent is dropped. It walks the object in Python, which is fine for the rare client
that asks.
"""

from __future__ import annotations

from typing import Any

from rexec.protocol.constants import XT
from rexec.protocol.sexp import Sexp

#: CMD_setEncoding's names and the codec of strings going to the client.
ENCODINGS = {b"native": "utf-8", b"utf8": "utf-8", b"latin1": "latin-1"}


def select(shell: Any, name: bytes) -> str:
    """Switch ``shell`` to encoding ``name`` (a key of :data:`ENCODINGS`) for strings
    from the client; returns the codec for strings to the client."""
    codec = ENCODINGS[name]
    shell.set_string_encoding(name)
    return codec


def _recode_body(body: bytes, source: str, target: str) -> bytes:
    out = []
    for item in bytes(body).split(b"\x00")[:-1]:
        if item == b"\xff":  # NA
            out.append(item)
            continue
        escaped = item[:1] == b"\xff"
        text = (item[1:] if escaped else item).decode(source, "surrogateescape")
        data = text.encode(target, "ignore")  # reEnc skips bytes it cannot convert
        out.append(b"\xff" + data if data[:1] == b"\xff" else data)
    return b"".join(part + b"\x00" for part in out)


def recode(s: Sexp, source: str, target: str) -> Sexp:
    """A copy of ``s`` whose character vectors (attributes included) are re-encoded from
    R's UTF-8 into ``target``, for the client.

    Towards R (``target`` UTF-8) strings are not converted — they keep the client's bytes
    and are marked with its encoding, as in Rserve — so ``s`` is returned as it is.
    """
    if target == "utf-8":
        return s
    root = Sexp(s.xt)
    work = [(s, root)]  # (original, copy to fill in): no recursion, for any depth
    while work:
        old, new = work.pop()
        value = old.value
        if old.xt == XT.ARRAY_STR:
            value = _recode_body(value, source, target)
        elif old.xt in (XT.VECTOR, XT.VECTOR_EXP, XT.LIST_NOTAG, XT.LANG_NOTAG):
            value = [Sexp(item.xt) for item in old.value]
            work.extend(zip(old.value, value, strict=True))
        elif old.xt in (XT.LIST_TAG, XT.LANG_TAG):
            value = [(Sexp(v.xt), Sexp(t.xt)) for v, t in old.value]
            for (v, t), (v2, t2) in zip(old.value, value, strict=True):
                work += ((v, v2), (t, t2))
        elif old.xt == XT.CLOS:
            value = (Sexp(old.value[0].xt), Sexp(old.value[1].xt))
            work.extend(zip(old.value, value, strict=True))
        new.value = value
        if old.attr is not None:
            new.attr = Sexp(old.attr.xt)
            work.append((old.attr, new.attr))
    return root
