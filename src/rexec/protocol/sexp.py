"""The codec's representation of an R object: one small class, wire-shaped.

A :class:`Sexp` keeps vector data in its wire form (little-endian bytes), so the
server can hand R's own memory to the socket and the client can view a reply with
``numpy.frombuffer`` — no per-element Python work on either side.

``value`` by base type:

=================================================  ==========================================
``XT.NULL``, ``XT.S4``                             ``None``
``XT.ARRAY_INT`` / ``ARRAY_DOUBLE`` / ``ARRAY_CPLX``  bytes-like, 4 / 8 / 16 bytes per element
``XT.ARRAY_BOOL``                                  bytes-like, one byte per element (0, 1, 2=NA)
``XT.RAW``                                         bytes-like
``XT.ARRAY_STR``                                   bytes-like: each element NUL-terminated, NA as
                                                   ``b"\\xff\\0"``, a leading 0xFF doubled; no
                                                   padding
``XT.VECTOR`` / ``VECTOR_EXP`` / ``LIST_NOTAG`` /  ``list[Sexp]``
``LANG_NOTAG``
``XT.LIST_TAG`` / ``LANG_TAG``                     ``list[tuple[Sexp, Sexp]]`` as (value, tag);
                                                   a tag is a ``SYMNAME`` or ``NULL``
``XT.SYMNAME`` / ``XT.STR``                        ``str``
``XT.CLOS``                                        ``tuple[Sexp, Sexp]`` (formals, body)
``XT.UNKNOWN``                                     ``int``: R's ``TYPEOF`` code
=================================================  ==========================================

``attr`` is the attribute pairlist (a ``LIST_TAG`` Sexp) or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rexec.protocol.constants import XT


@dataclass(slots=True)
class Sexp:
    """One encoded R object: base type, wire-shaped value, optional attributes."""

    xt: int
    value: Any = None
    attr: Sexp | None = None

    def attribute(self, name: str) -> Sexp | None:
        """The attribute called ``name``, or None (attributes are looked up by tag)."""
        if self.attr is None or self.attr.xt != XT.LIST_TAG:
            return None
        for value, tag in self.attr.value:
            if tag.xt == XT.SYMNAME and tag.value == name:
                return value
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sexp):
            return NotImplemented
        return _same(self, other)


def _same(a: Any, b: Any) -> bool:
    """Structural equality of two objects (vector data compared as bytes), walked from a
    work list rather than by recursion, so objects nested any depth compare."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if isinstance(x, Sexp) or isinstance(y, Sexp):
            if not (isinstance(x, Sexp) and isinstance(y, Sexp)) or x.xt != y.xt:
                return False
            pending.append((x.attr, y.attr))
            pending.append((x.value, y.value))
        elif isinstance(x, (list, tuple)) or isinstance(y, (list, tuple)):
            if type(x) is not type(y) or len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif _comparable(x) != _comparable(y):
            return False
    return True


def _comparable(value: Any) -> Any:
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    return value


NULL = Sexp(XT.NULL)
