"""Convert between R objects (SEXP pointers) and the codec's :class:`Sexp`.

Numeric vectors are never walked element by element: outgoing data is a view of
R's own memory (``ffi.buffer``), incoming data is ``memmove``-d into a fresh vector.
Long character vectors go through vectorised R helpers (``writeBin``/``readBin``).
The mapping of R types to XT types follows Rserve's encoder exactly.
"""

from __future__ import annotations

from typing import Any

from rexec.protocol.constants import NA_INTEGER, XT
from rexec.protocol.sexp import Sexp
from rexec.rshell import capi
from rexec.rshell.embedded import ffi, rlib

#: Character vectors up to this length are converted in Python; longer ones in R.
SMALL_STRINGS = 32
_NA_MARK = bytes(2 if b == 0x80 else 0 for b in range(256))
#: Logical vectors up to this length are converted element by element; longer ones in bulk.
SMALL_LOGICALS = 64
#: Conversion recurses this many levels at most; deeper objects are done from a work list.
NESTING = 100


class Converter:
    """Bound to one started R; ``helpers`` is the environment built from helpers.R."""

    def __init__(self, helpers: Any, call: Any) -> None:
        self._nil = rlib.R_NilValue
        self._na_string = rlib.R_NaString
        self._string_body = rlib.Rf_findVarInFrame(helpers, rlib.Rf_install(b"string_body"))
        self._string_vector = rlib.Rf_findVarInFrame(helpers, rlib.Rf_install(b"string_vector"))
        self._logical_vector_fn = rlib.Rf_findVarInFrame(
            helpers, rlib.Rf_install(b"logical_vector")
        )
        self._call = call  # (function, *args) -> SEXP, raises on R error
        #: How strings from the client are marked (cetype_t): the session's encoding, as
        #: in Rserve — native (R's "unknown"; the locale is UTF-8), UTF-8 or latin1.
        self.string_encoding = rlib.CE_NATIVE
        base = rlib.R_BaseEnv
        self._any_na = rlib.Rf_findFun(rlib.Rf_install(b"anyNA"), base)
        self._write_bin = rlib.Rf_findFun(rlib.Rf_install(b"writeBin"), base)
        self._empty_raw = rlib.Rf_allocVector(rlib.RAWSXP, 0)
        rlib.R_PreserveObject(self._empty_raw)
        l10n = call(rlib.Rf_findFun(rlib.Rf_install(b"l10n_info"), base))
        #: In a UTF-8 locale writeBin() itself translates every string to UTF-8.
        self._utf8_locale = bool(rlib.LOGICAL(rlib.VECTOR_ELT(l10n, 1))[0])

    # ----------------------------------------------------------------- R -> Sexp
    def to_sexp(self, x: Any) -> Sexp:
        """The :class:`Sexp` for R object ``x`` (which the caller keeps protected).

        Objects nested any depth convert (Rserve sends a list nested thousands of levels
        deep): recursion stops :data:`NESTING` levels down, where an empty :class:`Sexp`
        stands in for the rest, filled in later from a work list.
        """
        deferred: list[tuple[Any, Sexp]] = []
        root = self._convert(x, 0, deferred)
        while deferred:
            x, target = deferred.pop()
            value = self._convert(x, 0, deferred)
            target.xt, target.value, target.attr = value.xt, value.value, value.attr
        return root

    def _convert(self, x: Any, depth: int, deferred: list[tuple[Any, Sexp]]) -> Sexp:
        if depth == NESTING:
            target = Sexp(XT.NULL)
            deferred.append((x, target))
            return target
        depth += 1
        t = x.sxpinfo.type
        attrib = capi.attrib(x)
        attr = None
        if t != rlib.CHARSXP and attrib != self._nil and attrib.sxpinfo.type == rlib.LISTSXP:
            attr = self._pairlist(attrib, rlib.LISTSXP, depth, deferred)
        if t == rlib.REALSXP:
            return Sexp(XT.ARRAY_DOUBLE, self._view(rlib.REAL, x, 8), attr)
        if t == rlib.INTSXP:
            return Sexp(XT.ARRAY_INT, self._view(rlib.INTEGER, x, 4), attr)
        if t == rlib.STRSXP:
            return Sexp(XT.ARRAY_STR, self._strings(x), attr)
        if t == rlib.LGLSXP:
            return Sexp(XT.ARRAY_BOOL, self._logicals(x), attr)
        if t == rlib.NILSXP:
            return Sexp(XT.NULL, None, attr)
        if t in (rlib.VECSXP, rlib.EXPRSXP):
            n = rlib.Rf_xlength(x)
            items = [self._convert(rlib.VECTOR_ELT(x, i), depth, deferred) for i in range(n)]
            return Sexp(XT.VECTOR if t == rlib.VECSXP else XT.VECTOR_EXP, items, attr)
        if t in (rlib.LISTSXP, rlib.LANGSXP):
            inner = self._pairlist(x, t, depth, deferred)
            inner.attr = attr
            return inner
        if t == rlib.SYMSXP:
            return Sexp(XT.SYMNAME, self._text(rlib.PRINTNAME(x)), attr)
        if t == rlib.RAWSXP:
            return Sexp(XT.RAW, self._view(rlib.RAW, x, 1), attr)
        if t == rlib.CPLXSXP:
            return Sexp(XT.ARRAY_CPLX, self._view(rlib.COMPLEX, x, 16), attr)
        if t == rlib.CLOSXP:
            formals, body = capi.closure_parts(x)
            parts = (self._convert(formals, depth, deferred), self._convert(body, depth, deferred))
            return Sexp(XT.CLOS, parts, attr)
        if t == rlib.S4SXP:
            return Sexp(XT.S4, None, attr)
        if t == rlib.CHARSXP:
            return Sexp(XT.STR, self._text(x), None)
        return Sexp(XT.UNKNOWN, t, attr)

    def _view(self, accessor: Any, x: Any, width: int) -> Any:
        n = rlib.Rf_xlength(x)
        if n == 0:
            return b""
        return ffi.buffer(accessor(x), n * width)

    def _text(self, charsxp: Any) -> str:
        return ffi.string(rlib.R_CHAR(charsxp)).decode("utf-8", "surrogateescape")

    def _pairlist(self, x: Any, t: int, depth: int, deferred: list[tuple[Any, Sexp]]) -> Sexp:
        nil = self._nil
        items: list[tuple[Sexp, Any]] = []
        tagged = False
        while x != nil:
            tag = rlib.TAG(x)
            if tag != nil:
                tagged = True
            items.append((self._convert(rlib.CAR(x), depth, deferred), tag))
            x = rlib.CDR(x)
        lang = t == rlib.LANGSXP
        if tagged:
            pairs = [(value, self._convert(tag, depth, deferred)) for value, tag in items]
            return Sexp(XT.LANG_TAG if lang else XT.LIST_TAG, pairs)
        return Sexp(XT.LANG_NOTAG if lang else XT.LIST_NOTAG, [value for value, _ in items])

    def _strings(self, x: Any) -> bytes:
        n = rlib.Rf_xlength(x)
        if n > SMALL_STRINGS:
            fast = self._strings_fast(x)
            if fast is not None:
                return fast
            body = self._call(self._string_body, x)
            return bytes(ffi.buffer(rlib.RAW(body), rlib.Rf_xlength(body)))
        parts = []
        for i in range(n):
            c = rlib.STRING_ELT(x, i)
            if c == self._na_string:
                parts.append(b"\xff\x00")
                continue
            data = ffi.string(rlib.R_CHAR(c))
            if rlib.Rf_getCharCE(c) == rlib.CE_LATIN1:
                data = data.decode("latin-1").encode()
            if data[:1] == b"\xff":
                data = b"\xff" + data
            parts.append(data + b"\x00")
        return b"".join(parts)

    def _strings_fast(self, x: Any) -> bytes | None:
        """The wire body from one ``writeBin(x, raw())`` when nothing needs escaping.

        That is the common case: no NA and no 0xFF byte anywhere (never part of valid
        UTF-8, so no element can start with one). Otherwise None: the caller takes the
        general path, which marks NAs and doubles leading 0xFF bytes.
        """
        if not self._utf8_locale:
            return None
        if rlib.LOGICAL(self._call(self._any_na, x))[0]:
            return None
        body = self._call(self._write_bin, x, self._empty_raw)
        data = bytes(ffi.buffer(rlib.RAW(body), rlib.Rf_xlength(body)))
        return None if b"\xff" in data else data

    def _logicals(self, x: Any) -> bytes:
        n = rlib.Rf_xlength(x)
        if n == 0:
            return b""
        data = rlib.LOGICAL(x)
        if n <= SMALL_LOGICALS:
            return bytes(v if v in (0, 1) else 2 for v in (data[i] for i in range(n)))
        # Vectorised without numpy: per element, the low byte is 1 (TRUE) or 0 (FALSE and
        # NA), and NA's high byte is 0x80; adding 2 where that byte is 0x80 gives Rserve's
        # 0/1/2 coding. The big-integer sum adds byte by byte (no carries: at most 2).
        words = bytes(ffi.buffer(data, n * 4))
        low = words[0::4]
        marks = words[3::4].translate(_NA_MARK)
        total = int.from_bytes(low, "little") + int.from_bytes(marks, "little")
        return total.to_bytes(n, "little")

    # ----------------------------------------------------------------- Sexp -> R
    def from_sexp(self, s: Sexp) -> Any:
        """Build the R object for ``s``; the result is PROTECTed once (caller unprotects).

        Objects nested any depth convert (Rserve decodes them too): recursion stops
        :data:`NESTING` levels down, leaving the slot for the rest NULL, filled in later
        from a work list; by then it hangs off the protected root.
        """
        deferred: list[tuple[Sexp, Any, int]] = []
        root = self._build(s, 0, deferred)
        while deferred:
            s, parent, index = deferred.pop()
            self._place(self._build(s, 0, deferred), parent, index)
        return root

    def _child(
        self, s: Sexp, parent: Any, index: int, depth: int, deferred: list[tuple[Sexp, Any, int]]
    ) -> None:
        """Build ``s`` into slot ``index`` of ``parent`` (-1: ``parent`` is a pairlist cell)."""
        if depth == NESTING:
            deferred.append((s, parent, index))
        else:
            self._place(self._build(s, depth, deferred), parent, index)

    def _place(self, x: Any, parent: Any, index: int) -> None:
        if index < 0:
            rlib.SETCAR(parent, x)
        else:
            rlib.SET_VECTOR_ELT(parent, index, x)
        rlib.Rf_unprotect(1)

    def _build(self, s: Sexp, depth: int, deferred: list[tuple[Sexp, Any, int]]) -> Any:
        depth += 1
        xt = s.xt
        if xt == XT.NULL:
            x = rlib.Rf_protect(self._nil)
        elif xt in (XT.ARRAY_INT, XT.INT):
            x = self._vector(rlib.INTSXP, rlib.INTEGER, s.value, 4)
        elif xt in (XT.ARRAY_DOUBLE, XT.DOUBLE):
            x = self._vector(rlib.REALSXP, rlib.REAL, s.value, 8)
        elif xt == XT.ARRAY_CPLX:
            x = self._vector(rlib.CPLXSXP, rlib.COMPLEX, s.value, 16)
        elif xt == XT.RAW:
            x = self._vector(rlib.RAWSXP, rlib.RAW, s.value, 1)
        elif xt in (XT.ARRAY_BOOL, XT.BOOL):
            x = self._logical_vector(s.value)
        elif xt == XT.ARRAY_STR:
            x = self._string_sexp(s.value)
        elif xt in (XT.VECTOR, XT.VECTOR_EXP):
            kind = rlib.VECSXP if xt == XT.VECTOR else rlib.EXPRSXP
            x = rlib.Rf_protect(rlib.Rf_allocVector(kind, len(s.value)))
            for i, item in enumerate(s.value):
                self._child(item, x, i, depth, deferred)
        elif xt in (XT.LIST_NOTAG, XT.LANG_NOTAG):
            pairs = [(item, None) for item in s.value]
            x = self._build_pairlist(pairs, xt == XT.LANG_NOTAG, depth, deferred)
        elif xt in (XT.LIST_TAG, XT.LANG_TAG):
            x = self._build_pairlist(s.value, xt == XT.LANG_TAG, depth, deferred)
        elif xt in (XT.SYMNAME, XT.STR):
            x = rlib.Rf_protect(self._symbol(s.value))
        elif xt == XT.S4:
            x = rlib.Rf_protect(capi.alloc_s4())
        else:  # closures, unknowns and obsolete types decode to NULL, as in Rserve
            x = rlib.Rf_protect(self._nil)
        if s.attr is not None and x != self._nil:
            self._attach(x, s.attr, depth, deferred)
        return x

    def _vector(self, kind: int, accessor: Any, data: Any, width: int) -> Any:
        n = len(data) // width
        x = rlib.Rf_protect(rlib.Rf_allocVector(kind, n))
        if n:
            ffi.memmove(accessor(x), data, n * width)
        return x

    def _logical_vector(self, data: Any) -> Any:
        n = len(data)
        x = rlib.Rf_protect(rlib.Rf_allocVector(rlib.LGLSXP, n))
        if not n:
            return x
        codes = bytes(data)
        if n <= SMALL_LOGICALS:
            target = rlib.LOGICAL(x)
            for i, code in enumerate(codes):
                target[i] = code if code < 2 else NA_INTEGER
            return x
        rlib.Rf_unprotect(1)
        raw = self._vector(rlib.RAWSXP, rlib.RAW, codes, 1)
        x = self._call(self._logical_vector_fn, raw)  # vectorised in R
        rlib.Rf_unprotect(1)
        return rlib.Rf_protect(x)

    def _string_sexp(self, body: Any) -> Any:
        """A character vector from ARRAY_STR data; its strings keep their bytes and are
        marked with the session's encoding, as Rserve marks them."""
        body = bytes(body)
        n = body.count(b"\x00")
        mark = self.string_encoding
        if n > SMALL_STRINGS:
            raw = self._vector(rlib.RAWSXP, rlib.RAW, body, 1)
            count = rlib.Rf_protect(rlib.Rf_ScalarInteger(n))
            encoding = rlib.Rf_protect(rlib.Rf_ScalarInteger(mark))
            x = self._call(self._string_vector, raw, count, encoding)
            rlib.Rf_unprotect(3)
            return rlib.Rf_protect(x)
        x = rlib.Rf_protect(rlib.Rf_allocVector(rlib.STRSXP, n))
        for i, item in enumerate(body.split(b"\x00")[:n]):
            if item == b"\xff":
                rlib.SET_STRING_ELT(x, i, self._na_string)
                continue
            if item[:1] == b"\xff":
                item = item[1:]
            rlib.SET_STRING_ELT(x, i, rlib.Rf_mkCharLenCE(item, len(item), mark))
        return x

    def _symbol(self, name: str) -> Any:
        if name == "":
            return rlib.R_MissingArg
        return rlib.Rf_install(name.encode("utf-8", "surrogateescape"))

    def _build_pairlist(
        self,
        items: list[tuple[Sexp, Sexp | None]],
        lang: bool,
        depth: int,
        deferred: list[tuple[Sexp, Any, int]],
    ) -> Any:
        if not items:
            return rlib.Rf_protect(self._nil)
        head = rlib.Rf_protect(rlib.Rf_allocList(len(items)))
        cell = head
        for value, tag in items:
            self._child(value, cell, -1, depth, deferred)
            if tag is not None and tag.xt in (XT.SYMNAME, XT.STR) and tag.value:
                rlib.SET_TAG(cell, self._symbol(tag.value))
            cell = rlib.CDR(cell)
        if lang:
            capi.set_language(head)
        return head

    def _attach(
        self, x: Any, attr: Sexp, depth: int, deferred: list[tuple[Sexp, Any, int]]
    ) -> None:
        if attr.xt not in (XT.LIST_TAG, XT.LIST_NOTAG):
            return
        pairs = attr.value if attr.xt == XT.LIST_TAG else [(v, None) for v in attr.value]
        attributes = self._build_pairlist(pairs, False, depth, deferred)
        capi.set_attrib(x, attributes)
        rlib.Rf_unprotect(1)
        if attr.xt == XT.LIST_TAG and any(
            tag.xt == XT.SYMNAME and tag.value == "class" for _, tag in pairs
        ):
            capi.set_object(x)
        if x.sxpinfo.type == rlib.S4SXP:
            capi.set_s4(x)
