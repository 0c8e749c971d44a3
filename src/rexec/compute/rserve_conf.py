"""Read Rserve's own configuration file (``Rserv.conf``) with Rserve's exact parsing.

Rserve's quirks are kept on purpose, so a file means what it meant to Rserve: a line is
cut at 510 characters; the key ends at the first blank, tab, ``=`` or ``:`` (so
``port = 6311`` sets the port to ``= 6311``, which is ignored); a boolean is true when
its first character is ``1``, ``y``, ``e`` or ``T`` (``yes``, ``enable``, ``TRUE`` — but
not ``true`` or ``on``); ``${VAR}`` expands from the environment. Each key rexec has no
equivalent for is reported, never silently dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LINE = 510
_EXPAND = re.compile(r"\$\{([^}]{0,61})\}")


def is_true(value: str) -> bool:
    return value[:1] in ("1", "y", "e", "T")


def _number(value: str) -> int:
    """C's atoi: leading digits (after blanks and a sign), else 0."""
    match = re.match(r"\s*([+-]?\d+)", value)
    return int(match.group(1)) if match else 0


def _lines(text: str) -> list[str]:
    pieces: list[str] = []
    for line in text.split("\n"):
        pieces += [line[i : i + _LINE] for i in range(0, max(len(line), 1), _LINE)]
    return pieces


def parse(text: str) -> list[tuple[str, str]]:
    """(key, value) pairs in file order."""
    entries = []
    for raw in _lines(text):
        line = raw.lstrip(" \t")
        if not line or line[0] in "#;\r":
            continue
        end = 0
        while end < len(line) and line[end] not in "\t =:":
            end += 1
        key = line[:end].lower()
        value = line[end + 1 :].lstrip(" \t") if end < len(line) else ""
        value = value.split("\r")[0].rstrip(" \t")
        entries.append((key, _EXPAND.sub(lambda m: os.environ.get(m.group(1), ""), value)))
    return entries


def _source(value: str) -> dict[str, Any]:
    return {"startup.eval+": f'try(source("{value}"))'} if value else {}


def _remote(value: str) -> dict[str, Any]:
    return {"remote": is_true(value)}


def _ipv6(value: str) -> dict[str, Any]:
    return {"ipv6": is_true(value)}


def _kilobytes(key: str) -> Callable[[str], dict[str, Any]]:
    def convert(value: str) -> dict[str, Any]:
        n = _number(value)
        return {key: n * 1024} if n > 32 else {}

    return convert


_MAP: dict[str, Callable[[str], dict[str, Any]]] = {
    "port": lambda v: {"server.port": _number(v)} if _number(v) > 0 else {},
    "qap.port": lambda v: {"server.port": _number(v)} if _number(v) > 0 else {},
    "remote": _remote,
    "ipv6": _ipv6,
    "auth": lambda v: {"auth.required": v[:1] == "r" or is_true(v)},
    "shutdown": lambda v: {"server.shutdown": "any" if is_true(v) else "disabled"},
    "workdir": lambda v: {"session.workdir": v} if v else {},
    "maxinbuf": _kilobytes("limits.maxinbuf"),
    "source": _source,
    "eval": lambda v: {"startup.eval+": v} if v else {},
    "oob": lambda v: {"session.oob": is_true(v)},
    "fileio": lambda v: {"session.fileio": is_true(v)},
    "encoding": lambda v: {"session.encoding": v} if v in ("native", "utf8", "latin1") else {},
    "tls.cert": lambda v: {"tls.cert": v},
    "tls.key": lambda v: {"tls.key": v},
    "qap.tls.port": lambda v: {"tls.port": _number(v)} if _number(v) > 0 else {},
    "tls.port": lambda v: {"tls.port": _number(v)} if _number(v) > 0 else {},
    "switch.qap.tls": lambda v: {"tls.switch": is_true(v)},
    "control": lambda v: {"control.enabled": is_true(v)},
    "plaintext": lambda v: {"auth.plaintext": is_true(v)},  # clear-text password files
    "daemon": lambda v: {},  # rexec stays in the foreground; supervise it as a service
    "deamon": lambda v: {},
}

_NOTES = {
    "plaintext": "logins are plain text in rexec (no crypt); this switch only decides "
    "whether users-file passwords may be stored in clear",
    "daemon": "ignored: rexec runs in the foreground",
    "deamon": "ignored: rexec runs in the foreground",
}


def load(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """rexec settings equivalent to the file, and one warning per unsupported key."""
    settings: dict[str, Any] = {}
    warnings: list[str] = []
    remote = ipv6 = False
    evals: list[str] = []
    for key, value in parse(Path(path).read_text(errors="replace")):
        convert = _MAP.get(key)
        if convert is None:
            warnings.append(f"{path}: Rserve setting '{key}' is not supported by rexec; ignored")
            continue
        if key in _NOTES:
            warnings.append(f"{path}: '{key}': {_NOTES[key]}")
        for name, converted in convert(value).items():
            if name == "startup.eval+":
                evals.append(converted)
            elif name == "remote":
                remote = converted
            elif name == "ipv6":
                ipv6 = converted
            else:
                settings[name] = converted
    if remote or ipv6:
        settings["server.host"] = ("::" if remote else "::1") if ipv6 else "0.0.0.0"
    if evals:
        settings["startup.eval"] = evals
    return settings, warnings
