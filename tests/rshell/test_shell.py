"""The embedded R shell: parsing, evaluation, conversions both ways, serialization.

R is started inside the test process (as in a spawned shell).
"""

from __future__ import annotations

import pytest

from rexec.protocol import XT, Err, Sexp, decode_strings, encode_strings, from_python
from rexec.protocol.codec import decode_sexp, encode_sexp


@pytest.fixture(scope="module")
def shell():
    from rexec.rshell import shell as rshell

    return rshell.start()


def roundtrip_identical(shell, code: str) -> bool:
    """R value -> Sexp -> wire bytes -> Sexp -> R value is identical() to the original."""
    original = shell.eval_text(code.encode())
    chunks, _ = encode_sexp(shell.to_sexp(original))
    decoded, _ = decode_sexp(b"".join(bytes(c) for c in chunks))
    rebuilt = shell.from_sexp(decoded)
    shell.assign(shell.string(b".rebuilt"), rebuilt)
    shell.assign(shell.string(b".original"), original)
    answer = shell.to_sexp(shell.eval_text(b"identical(.original, .rebuilt)"))
    shell.release()
    return bytes(answer.value) == b"\x01"


@pytest.mark.parametrize(
    "code",
    [
        "1:10",
        "c(1.5, NA, NaN, Inf)",
        "c(TRUE, NA, FALSE)",
        "rep(c(TRUE, NA, FALSE), 100)",  # the numpy path
        "c('a', NA, '', '\u00e9')",
        "c(as.character(1:100), NA, '\u65e5\u672c')",  # the writeBin/readBin path
        "complex(real = 1:3, imaginary = c(NA, 0, -1))",
        "as.raw(0:255)",
        "list(1L, 'a', list(NULL, TRUE))",
        "factor(c('x', 'y', NA, 'x'))",
        "ordered(c('lo', 'hi'), levels = c('lo', 'hi'))",
        "matrix(1:6, 2, dimnames = list(c('a', 'b'), NULL))",
        "data.frame(x = 1:3, y = c('a', 'b', NA), z = factor(c('u', 'v', 'u')))",
        "data.frame(x = 1:2, row.names = c('p', 'q'))",
        "as.Date('2024-02-29') + 0:2",
        "as.POSIXct('2024-01-02 03:04:05', tz = 'UTC')",
        "quote(f(x, a = 1))",
        "as.name('sym')",
        "NULL",
        "structure(1:3, class = 'myclass', extra = 'kept')",
    ],
)
def test_values_round_trip_through_the_codec(shell, code: str) -> None:
    assert roundtrip_identical(shell, code)


def test_strings_with_0xff_and_na_match_rserve_rules(shell) -> None:
    x = shell.to_sexp(shell.eval_text(b"c(NA, rawToChar(as.raw(c(255, 65))), 'b')"))
    shell.release()
    assert bytes(x.value) == b"\xff\x00\xff\xffA\x00b\x00"
    assert decode_strings(encode_strings(["a", None, "\u00e9"])) == ["a", None, "\u00e9"]


def test_latin1_strings_are_sent_as_utf8(shell) -> None:
    x = shell.to_sexp(shell.eval_text(b"x <- 'caf\\xe9'; Encoding(x) <- 'latin1'; x"))
    shell.release()
    assert bytes(x.value) == "caf\u00e9\x00".encode()


def test_parse_statuses(shell) -> None:
    from rexec.rshell.shell import RError

    for code, status in [(b"1+", 2), (b")", 3), (b"'\\q'", 3), (b"1 2", 3)]:
        with pytest.raises(RError) as info:
            shell.eval_text(code)
        assert info.value.status == status
        shell.release()
    empty = shell.to_sexp(shell.eval_text(b"# nothing"))
    shell.release()
    assert empty.xt == XT.VECTOR_EXP and empty.value == []


def test_errors_keep_geterrmessage_meaningful(shell) -> None:
    from rexec.rshell.shell import RError

    with pytest.raises(RError) as info:
        shell.eval_text(b"a <- 1\nstop('first')\na <- 2")
    assert info.value.status == Err.R_ERROR
    shell.release()
    message = shell.to_sexp(shell.eval_text(b"c(geterrmessage(), a)"))
    shell.release()
    assert bytes(message.value).split(b"\x00")[:2] == [b"Error: first\n", b"1"]


def test_serialized_eval_and_assign(shell) -> None:
    payload = shell.eval_text(b"serialize(quote(sum(1:10)), NULL)")
    raw = bytes(shell.raw_view(payload))
    shell.release()
    result = bytes(shell.ser_eval(raw))
    shell.release()
    shell.assign(shell.string(b".reply"), shell.raw(result))
    value = shell.to_sexp(shell.eval_text(b"unserialize(.reply)"))
    shell.release()
    assert value.xt == XT.ARRAY_INT and bytes(value.value) == (55).to_bytes(4, "little")


def test_assign_from_python_values(shell) -> None:
    shell.assign(shell.string(b"v"), shell.from_sexp(from_python([1.5, None, 3.0])))
    out = shell.to_sexp(shell.eval_text(b"is.na(v)"))
    shell.release()
    assert bytes(out.value) == b"\x00\x01\x00"


def test_deeply_nested_objects_convert_both_ways(shell) -> None:
    code = (
        b"local({x <- 'leaf'; for (i in 1:20000) x <- if (i %% 2) list(x, i) "
        b"else call('f', a = x); x})"
    )
    original = shell.eval_text(code)
    value = shell.to_sexp(original)  # deeper than Python's recursion limit
    chunks, _ = encode_sexp(value)
    rebuilt = shell.from_sexp(decode_sexp(b"".join(bytes(c) for c in chunks))[0])
    shell.assign(shell.string(b".rebuilt"), rebuilt)
    shell.assign(shell.string(b".original"), original)
    answer = shell.to_sexp(shell.eval_text(b"identical(.original, .rebuilt)"))
    shell.release()
    assert bytes(answer.value) == b"\x01"


@pytest.mark.parametrize(
    ("name", "marks"),
    [(b"native", "unknown"), (b"utf8", "UTF-8"), (b"latin1", "latin1")],
)
def test_client_strings_are_marked_with_the_session_encoding(shell, name, marks) -> None:
    text = "\u00e9t\u00e9".encode("latin-1" if name == b"latin1" else "utf-8")
    shell.set_string_encoding(name)
    try:  # a short vector (converted in Python), a long one (in R), a plain string
        short = shell.from_sexp(Sexp(XT.ARRAY_STR, encode_strings([text, "a"])))
        long = shell.from_sexp(Sexp(XT.ARRAY_STR, encode_strings(["b"] * 40 + [text])))
        shell.assign(shell.string(b"short"), short)
        shell.assign(shell.string(b"long"), long)
        shell.assign(shell.string(b"one"), shell.string(text))
        check = b"paste(Encoding(c(short, long[41], one)), collapse = ' ')"
        answer = shell.to_sexp(shell.eval_text(check))
    finally:
        shell.set_string_encoding(b"native")
        shell.release()
    assert decode_strings(answer.value) == [f"{marks} unknown {marks} {marks}"]


def test_helpers_are_not_on_the_search_path(shell) -> None:
    code = b"c(any(grepl('rexec', search())), is.function(self.oobSend))"
    answer = shell.to_sexp(shell.eval_text(code))
    shell.release()
    assert bytes(answer.value) == b"\x00\x01"
