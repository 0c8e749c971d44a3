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

        No recursion, so objects nested any depth convert (Rserve sends a list nested
        thousands of levels deep): every object's :class:`Sexp` is made empty first and
        filled in from a work list, children getting empty ones of their own.
        """
        root = Sexp(XT.NULL)
        work = [(x, root)]
        while work:
            x, target = work.pop()
            self._fill(x, target, work)
        return root

    def _fill(self, x: Any, target: Sexp, work: list[tuple[Any, Sexp]]) -> None:
        t = x.sxpinfo.type
        attrib = capi.attrib(x)
        if t != rlib.CHARSXP and attrib != self._nil and attrib.sxpinfo.type == rlib.LISTSXP:
            target.attr = Sexp(XT.NULL)
            target.attr.xt, target.attr.value = self._pairlist(attrib, rlib.LISTSXP, work)
        if t == rlib.REALSXP:
            target.xt, target.value = XT.ARRAY_DOUBLE, self._view(rlib.REAL, x, 8)
        elif t == rlib.INTSXP:
            target.xt, target.value = XT.ARRAY_INT, self._view(rlib.INTEGER, x, 4)
        elif t == rlib.STRSXP:
            target.xt, target.value = XT.ARRAY_STR, self._strings(x)
        elif t == rlib.LGLSXP:
            target.xt, target.value = XT.ARRAY_BOOL, self._logicals(x)
        elif t == rlib.NILSXP:
            target.xt = XT.NULL
        elif t in (rlib.VECSXP, rlib.EXPRSXP):
            items = [Sexp(XT.NULL) for _ in range(rlib.Rf_xlength(x))]
            work.extend((rlib.VECTOR_ELT(x, i), item) for i, item in enumerate(items))
            target.xt = XT.VECTOR if t == rlib.VECSXP else XT.VECTOR_EXP
            target.value = items
        elif t in (rlib.LISTSXP, rlib.LANGSXP):
            target.xt, target.value = self._pairlist(x, t, work)
        elif t == rlib.SYMSXP:
            target.xt, target.value = XT.SYMNAME, self._text(rlib.PRINTNAME(x))
        elif t == rlib.RAWSXP:
            target.xt, target.value = XT.RAW, self._view(rlib.RAW, x, 1)
        elif t == rlib.CPLXSXP:
            target.xt, target.value = XT.ARRAY_CPLX, self._view(rlib.COMPLEX, x, 16)
        elif t == rlib.CLOSXP:
            formals, body = capi.closure_parts(x)
            parts = (Sexp(XT.NULL), Sexp(XT.NULL))
            work += ((formals, parts[0]), (body, parts[1]))
            target.xt, target.value = XT.CLOS, parts
        elif t == rlib.S4SXP:
            target.xt = XT.S4
        elif t == rlib.CHARSXP:
            target.xt, target.value = XT.STR, self._text(x)
        else:
            target.xt, target.value = XT.UNKNOWN, t

    def _view(self, accessor: Any, x: Any, width: int) -> Any:
        n = rlib.Rf_xlength(x)
        if n == 0:
            return b""
        return ffi.buffer(accessor(x), n * width)

    def _text(self, charsxp: Any) -> str:
        return ffi.string(rlib.R_CHAR(charsxp)).decode("utf-8", "surrogateescape")

    def _pairlist(self, x: Any, t: int, work: list[tuple[Any, Sexp]]) -> tuple[XT, list[Any]]:
        """XT type and value of a pairlist or call; its elements (and tags) go to ``work``."""
        nil = self._nil
        cells: list[tuple[Sexp, Any]] = []
        tagged = False
        while x != nil:
            tag = rlib.TAG(x)
            if tag != nil:
                tagged = True
            item = Sexp(XT.NULL)
            work.append((rlib.CAR(x), item))
            cells.append((item, tag))
            x = rlib.CDR(x)
        lang = t == rlib.LANGSXP
        if not tagged:
            return (XT.LANG_NOTAG if lang else XT.LIST_NOTAG), [item for item, _ in cells]
        pairs = []
        for item, tag in cells:
            name = Sexp(XT.NULL)
            if tag != nil:
                work.append((tag, name))
            pairs.append((item, name))
        return (XT.LANG_TAG if lang else XT.LIST_TAG), pairs

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

        No recursion, so objects nested any depth convert (Rserve decodes them too): each
        object is made and stored into its parent straight away, its attributes and
        children filled in later from a work list; everything hangs off the protected
        root, so nothing else needs protecting.
        """
        root = self._node(s)
        work: list[tuple[Sexp, Any, int]] = []
        self._expand(s, root, work)
        while work:
            s, parent, index = work.pop()
            x = self._node(s)
            if index < 0:
                rlib.SETCAR(parent, x)  # ``parent`` is the pairlist cell itself
            else:
                rlib.SET_VECTOR_ELT(parent, index, x)
            rlib.Rf_unprotect(1)
            self._expand(s, x, work)
        return root

    def _node(self, s: Sexp) -> Any:
        """The R object for ``s`` without its attributes and children (PROTECTed once)."""
        xt = s.xt
        if xt == XT.NULL:
            return rlib.Rf_protect(self._nil)
        if xt in (XT.ARRAY_INT, XT.INT):
            return self._vector(rlib.INTSXP, rlib.INTEGER, s.value, 4)
        if xt in (XT.ARRAY_DOUBLE, XT.DOUBLE):
            return self._vector(rlib.REALSXP, rlib.REAL, s.value, 8)
        if xt == XT.ARRAY_CPLX:
            return self._vector(rlib.CPLXSXP, rlib.COMPLEX, s.value, 16)
        if xt == XT.RAW:
            return self._vector(rlib.RAWSXP, rlib.RAW, s.value, 1)
        if xt in (XT.ARRAY_BOOL, XT.BOOL):
            return self._logical_vector(s.value)
        if xt == XT.ARRAY_STR:
            return self._string_sexp(s.value)
        if xt in (XT.VECTOR, XT.VECTOR_EXP):
            kind = rlib.VECSXP if xt == XT.VECTOR else rlib.EXPRSXP
            return rlib.Rf_protect(rlib.Rf_allocVector(kind, len(s.value)))
        if xt in (XT.LIST_NOTAG, XT.LANG_NOTAG):
            return self._pairlist_node([None] * len(s.value), xt == XT.LANG_NOTAG)
        if xt in (XT.LIST_TAG, XT.LANG_TAG):
            return self._pairlist_node([tag for _, tag in s.value], xt == XT.LANG_TAG)
        if xt in (XT.SYMNAME, XT.STR):
            return rlib.Rf_protect(self._symbol(s.value))
        if xt == XT.S4:
            return rlib.Rf_protect(capi.alloc_s4())
        # closures, unknowns and obsolete types decode to NULL, as in Rserve
        return rlib.Rf_protect(self._nil)

    def _expand(self, s: Sexp, x: Any, work: list[tuple[Sexp, Any, int]]) -> None:
        """Attach ``s``'s attributes to ``x`` and queue its children for filling in."""
        if s.attr is not None and x != self._nil:
            self._attach(x, s.attr, work)
        xt = s.xt
        if xt in (XT.VECTOR, XT.VECTOR_EXP):
            work.extend((item, x, i) for i, item in enumerate(s.value))
        elif xt in (XT.LIST_NOTAG, XT.LANG_NOTAG):
            self._cells(x, s.value, work)
        elif xt in (XT.LIST_TAG, XT.LANG_TAG):
            self._cells(x, [value for value, _ in s.value], work)

    def _cells(self, head: Any, values: list[Sexp], work: list[tuple[Sexp, Any, int]]) -> None:
        cell = head
        for value in values:
            work.append((value, cell, -1))
            cell = rlib.CDR(cell)

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

    def _pairlist_node(self, tags: list[Sexp | None], lang: bool) -> Any:
        """A pairlist (or call) of ``len(tags)`` cells with their tags, values still NULL."""
        if not tags:
            return rlib.Rf_protect(self._nil)
        head = rlib.Rf_protect(rlib.Rf_allocList(len(tags)))
        cell = head
        for tag in tags:
            if tag is not None and tag.xt in (XT.SYMNAME, XT.STR) and tag.value:
                rlib.SET_TAG(cell, self._symbol(tag.value))
            cell = rlib.CDR(cell)
        if lang:
            capi.set_language(head)
        return head

    def _attach(self, x: Any, attr: Sexp, work: list[tuple[Sexp, Any, int]]) -> None:
        if attr.xt not in (XT.LIST_TAG, XT.LIST_NOTAG):
            return
        pairs = attr.value if attr.xt == XT.LIST_TAG else [(v, None) for v in attr.value]
        attributes = self._pairlist_node([tag for _, tag in pairs], lang=False)
        capi.set_attrib(x, attributes)
        rlib.Rf_unprotect(1)
        self._cells(attributes, [value for value, _ in pairs], work)
        if attr.xt == XT.LIST_TAG and any(
            tag.xt == XT.SYMNAME and tag.value == "class" for _, tag in pairs
        ):
            capi.set_object(x)
        if x.sxpinfo.type == rlib.S4SXP:
            capi.set_s4(x)
