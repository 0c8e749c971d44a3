"""R's console output as out-of-band messages (``session.console_oob``).

Rserve has this as ``console.oob`` for its OCAP connections; rexec offers it on QAP1
connections with Rserve's message shape: while a request runs with it on, what R
writes to its console (``print``, ``cat``, ``message`` to stderr) is sent to the
client as OOB_SEND frames carrying ``list("console.out", text)`` or
``list("console.err", text)``. Text is buffered per stream and sent at each newline,
when 8 KiB have gathered, and when the request ends, so output streams live a line at
a time without a frame per character.
"""

from __future__ import annotations

from collections.abc import Callable

from rexec.protocol import XT, Sexp

_BUFFER = 8192


def _string(text: str) -> Sexp:
    return Sexp(XT.ARRAY_STR, text.encode("utf-8", "replace").replace(b"\0", b"") + b"\0")


class ConsoleStream:
    """Collects console writes and hands each flushed piece to ``send`` (an Sexp)."""

    def __init__(self, send: Callable[[Sexp], None]) -> None:
        self.send = send
        self._pending: dict[bool, list[str]] = {False: [], True: []}
        self._sizes = {False: 0, True: 0}

    def write(self, text: str, error: bool) -> None:
        self._flush(not error)  # the other stream first, as Rserve: the order is kept
        self._pending[error].append(text)
        self._sizes[error] += len(text)
        if "\n" in text or self._sizes[error] >= _BUFFER:
            self._flush(error)

    def flush(self) -> None:
        self._flush(False)
        self._flush(True)

    def _flush(self, error: bool) -> None:
        if not self._sizes[error]:
            return
        text = "".join(self._pending[error])
        self._pending[error].clear()
        self._sizes[error] = 0
        kind = "console.err" if error else "console.out"
        self.send(Sexp(XT.VECTOR, [_string(kind), _string(text)]))
