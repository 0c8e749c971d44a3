"""Read Rserve's own configuration file (``Rserv.conf``) with Rserve's exact parsing.

Rserve's quirks are kept on purpose, so a file means what it meant to Rserve: a line is
cut at 510 characters; the key ends at the first blank, tab, ``=`` or ``:`` (so
``port = 6311`` sets the port to ``= 6311``, which is ignored); a boolean is true when
its first character is ``1``, ``y``, ``e`` or ``T`` (``yes``, ``enable``, ``TRUE`` — but
not ``true`` or ``on``); numbers are read as Rserve reads them (``0x1f`` is hex, ``017``
octal); ``${VAR}`` expands from the environment.

Every key of Rserve 1.8's ``setConfig`` is handled: it is mapped to the rexec setting
that does the same, or, when rexec does something else, a warning says what. The server
starts whenever Rserve would start with the same file. ``docs/compatibility.md`` has
the table.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_LINE = 510
_EXPAND = re.compile(r"\$\{([^}]{0,61})\}")


def is_true(value: str) -> bool:
    return value[:1] in ("1", "y", "e", "T")


def _atoi(value: str) -> int:
    """C's atoi: leading digits (after blanks and a sign), else 0."""
    match = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", value)
    return int(match.group(1)) if match else 0


def _strtol(value: str, base: int) -> int:
    digits = "0123456789abcdef"[:base]
    match = re.match(r"[ \t\n\v\f\r]*([+-]?)(0[xX])?", value)
    assert match is not None
    sign, rest = match.group(1), value[match.end() :]
    if match.group(2) and base != 16:  # "0x" in base 8 is a 0 followed by junk
        return 0
    n = 0
    for char in rest.lower():
        if char not in digits:
            break
        n = n * base + digits.index(char)
    return -n if sign == "-" else n


def satoi(value: str) -> int:
    """Rserve's ``satoi``: ``0x...`` is hexadecimal, ``0`` + digit octal, else atoi."""
    if value[:2] == "0x":
        return _strtol(value[2:], 16)
    if value[:1] == "0" and value[1:2].isdigit():
        return _strtol(value[1:], 8)
    return _atoi(value)


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


def _r_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def startup_line(code: str) -> str:
    """R code that runs one ``eval``/``source`` line as Rserve's start-up ``voidEval``
    does: text that does not parse is skipped, an error ends that line (not the
    server), and the next line still runs."""
    return (
        f"local({{ .rserve.line <- tryCatch(parse(text = {_r_string(code)}), "
        "error = function(e) expression()); for (.rserve.expr in .rserve.line) "
        'if (inherits(try(eval(.rserve.expr, globalenv())), "try-error")) break })'
    )


def _true(value: str) -> bool:
    return is_true(value)


def _false(value: str) -> bool:
    return not is_true(value)


def _set(value: str) -> bool:
    return bool(value)


def _positive(value: str) -> bool:
    return satoi(value) > 0


#: Keys rexec does not act on: when a value asks for what rexec does not do (a value
#: meaning Rserve's default is silent), and what rexec does instead.
_UNSUPPORTED: dict[str, tuple[Callable[[str], bool], str]] = {
    "msg.id": (_true, "replies carry no message ids"),
    "keep.alive": (
        _true,
        "rexec sets no SO_KEEPALIVE; idle connections are closed after limits.idle_timeout",
    ),
    "close.all.stdio": (_true, "rexec does not daemonise; its output is its log"),
    "tag.argv": (_true, "rexec does not rename its processes"),
    "pid.file": (_set, "rexec writes no pid file (`rexec status` asks a running node)"),
    "ulog": (_set, "rexec logs to standard error only"),
    "log.io": (_true, "no effect (as in Rserve builds without debugging); see log.commands"),
    "forward.stdio": (_true, "R's console output stays in the server log"),
    "console.oob": (
        _true,
        "Rserve applies it to OCAP connections only, which rexec does not serve; for QAP "
        "connections see session.console_oob",
    ),
    "console.input": (_true, "R sessions cannot read console input"),
    "io.use.context": (_true, "R's console output stays in the server log"),
    "use.idle.callback": (_true, "no idle callbacks"),
    "oob.idle.interval": (_positive, "no idle OOB messages"),
    "qap.oc": (
        _true,
        "object-capability (OCAP) mode is not implemented: rexec serves the eval "
        "protocol, so OCAP clients will not work",
    ),
    "rserve.oc": (
        _true,
        "object-capability (OCAP) mode is not implemented: rexec serves the eval "
        "protocol, so OCAP clients will not work",
    ),
    "websockets.qap.oc": (_true, "no WebSocket server"),
    "websockets": (_true, "no WebSocket server"),
    "websockets.qap": (_true, "no WebSocket server"),
    "websockets.text": (_true, "no WebSocket server"),
    "websockets.port": (_positive, "no WebSocket server"),
    "websockets.tls.port": (_positive, "no WebSocket server"),
    "websockets.user": (_set, "no WebSocket server"),
    "http.port": (_positive, "no HTTP server (rexec web is the HTTP API)"),
    "https.port": (_positive, "no HTTP server (rexec web is the HTTP API)"),
    "http.tls.port": (_positive, "no HTTP server (rexec web is the HTTP API)"),
    "http.upgrade.websockets": (_true, "no HTTP server"),
    "http.raw.body": (_true, "no HTTP server"),
    "http.user": (_set, "no HTTP server"),
    "https.user": (_set, "no HTTP server"),
    "rsa.key": (
        _set,
        "no RSA secure login (CMD_keyReq and CMD_secLogin get ERR_inv_cmd): log in "
        "with CMD_login, over TLS when the network is not trusted",
    ),
    "r-control": (_true, "R code cannot use control commands (Rserve 1.8 ignores it too)"),
    "r.control": (_true, "R code cannot use control commands (Rserve 1.8 ignores it too)"),
    "chroot": (_set, "no chroot: R shells run as shell.user in a session directory of their own"),
    "umask": (_set, "rexec keeps the umask it was started with (Rserve's default is 0)"),
    "workdir.mode": (_set, "session directories are made 0700, owned by the shell account"),
    "workdir.parent.mode": (_set, "session directories are made 0700, owned by the shell account"),
    "workdir.clean": (_false, "rexec always removes a session's directory when the session ends"),
    "random.uid": (_true, "every session runs as shell.user (no per-session accounts)"),
    "random.gid": (_true, "every session runs as shell.user (no per-session accounts)"),
    "random.uid.range": (_set, "every session runs as shell.user (no per-session accounts)"),
    "auto.uid": (
        _true,
        "every session runs as shell.user, whoever logs in (Rserve refuses users "
        "without a uid in the password file and no default.uid; rexec lets them in)",
    ),
    "auto.gid": (_true, "every session runs as shell.user's group, whoever logs in"),
    "default.uid": (_set, "every session runs as shell.user, whoever logs in"),
    "default.gid": (_set, "every session runs as shell.user's group, whoever logs in"),
    "interactive": (_false, "R sessions keep interactive() = TRUE (Rserve's default)"),
    "daemon": (_true, "rexec runs in the foreground; run it as a service"),
    "deamon": (_true, "rexec runs in the foreground; run it as a service"),
}


class _Reader:
    """Rserve's configuration state while files are read, in order, as Rserve does."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.evals: list[str] = []
        self.remote = self.ipv6 = False
        self.auth: bool | None = None  # None: the files do not say
        self.plaintext: bool | None = None
        self.allow: list[str] = []
        self.pwdfile = self.auth_function = self.socket = ""
        self.uid: int | None = None
        self.gid: int | None = None
        self.su = "now"
        self.tls_files: dict[str, str] = {}
        self.tls_port = 0
        self.tls_port_key = "tls.port"
        self.tls_switch: bool | None = None
        self.tls_client = ""
        self.qap: bool | None = None  # None: not given (Rserve's default, enabled)
        self.qap_key = "qap"

    def warn(self, where: str, key: str, text: str) -> None:
        self.warnings.append(f"{where}: Rserve setting '{key}': {text}")

    def read(self, path: str | Path) -> None:
        for key, value in parse(Path(path).read_text(errors="replace")):
            self.key(str(path), key, value)

    def key(self, where: str, key: str, value: str) -> None:
        if key == "fork" and value == "here":
            self.warn(where, "fork here", "ignored: one rexec server reads the whole file")
        elif key in _HANDLED:
            getattr(self, "_" + key.replace(".", "_"))(where, value)
        elif key in _UNSUPPORTED:
            asks, instead = _UNSUPPORTED[key]
            if asks(value):
                self.warnings.append(
                    f"{where}: Rserve setting '{key}' is not supported by rexec: {instead}"
                )
        else:
            self.warnings.append(
                f"{where}: '{key}' is not an Rserve setting; ignored, as by Rserve"
            )

    # the network ---------------------------------------------------------------

    def _port(self, where: str, value: str, key: str = "port") -> None:
        n = satoi(value) if value else 0
        if n > 65535:
            self.warn(where, key, f"{n} is not a TCP port; ignored")
        elif n > 0:
            self.settings["server.port"] = n

    def _qap_port(self, where: str, value: str) -> None:
        self._port(where, value, "qap.port")

    def _remote(self, where: str, value: str) -> None:
        self.remote = is_true(value)

    def _ipv6(self, where: str, value: str) -> None:
        self.ipv6 = is_true(value)

    def _allow(self, where: str, value: str) -> None:
        if value:
            self.allow.append(value)

    def _socket(self, where: str, value: str) -> None:
        self.socket = value

    def _sockmod(self, where: str, value: str) -> None:
        pass  # only used with `socket`, reported there

    # authentication ------------------------------------------------------------

    def _auth(self, where: str, value: str) -> None:
        self.auth = value[:1] == "r" or is_true(value)

    def _plaintext(self, where: str, value: str) -> None:
        self.plaintext = is_true(value)

    def _pwdfile(self, where: str, value: str) -> None:
        self.pwdfile = os.path.abspath(value) if value else ""

    def _auth_function(self, where: str, value: str) -> None:
        self.auth_function = value

    def _cachepwd(self, where: str, value: str) -> None:
        if value[:1] == "i":
            self.warn(
                where,
                "cachepwd",
                "rexec reads the password file in the server process only (R code never "
                "can, as with Rserve's cache) and re-reads it whenever it changes, "
                "instead of once at start-up",
            )

    # who R runs as -------------------------------------------------------------

    def _uid(self, where: str, value: str) -> None:
        if value:
            self.uid = satoi(value)
            if self.uid == 0:
                self.warn(
                    where,
                    "uid",
                    "0: Rserve keeps running as root; rexec never runs R as root (unless "
                    "--allow-root): R shells run as shell.user (default: the rexec account)",
                )

    def _gid(self, where: str, value: str) -> None:
        if value:
            self.gid = satoi(value)

    def _su(self, where: str, value: str) -> None:
        if not value:
            return
        if value[0] in "nsc":
            self.su = {"n": "now", "s": "server", "c": "client"}[value[0]]
        else:
            self.warn(where, "su", f"{value!r} is none of now, server, client; ignored")

    # sessions ------------------------------------------------------------------

    def _workdir(self, where: str, value: str) -> None:
        if value:
            self.settings["session.workdir"] = value
        else:
            self.settings.pop("session.workdir", None)
            self.warn(
                where,
                "workdir",
                "empty (Rserve: sessions share its current directory); rexec still gives "
                "each session a directory of its own under session.workdir",
            )

    def _source(self, where: str, value: str) -> None:
        if value:
            # pasted in as Rserve pastes it (a quote in the path is a parse error there too)
            self.evals.append(startup_line(f'try(source("{value}"))'))

    def _eval(self, where: str, value: str) -> None:
        if value:
            self.evals.append(startup_line(value))

    def _oob(self, where: str, value: str) -> None:
        self.settings["session.oob"] = is_true(value)

    def _fileio(self, where: str, value: str) -> None:
        self.settings["session.fileio"] = is_true(value)

    def _encoding(self, where: str, value: str) -> None:
        if value in ("native", "utf8", "latin1"):
            self.settings["session.encoding"] = value
        elif value:
            self.warn(where, "encoding", f"{value!r} is none of native, latin1, utf8; ignored")

    def _maxinbuf(self, where: str, value: str) -> None:
        if _atoi(value) > 32:
            self.settings["limits.maxinbuf"] = _atoi(value) * 1024

    def _maxsendbuf(self, where: str, value: str) -> None:
        if _atoi(value) > 32:
            self.settings["limits.maxsendbuf"] = _atoi(value) * 1024

    def _shutdown(self, where: str, value: str) -> None:
        self.settings["server.shutdown"] = "any" if is_true(value) else "disabled"

    def _control(self, where: str, value: str) -> None:
        self.settings["control.enabled"] = is_true(value)
        if is_true(value):
            self.warn(
                where,
                "control",
                "Rserve 1.8 ignores it; rexec enables ctrlEval, ctrlSource and "
                "ctrlShutdown for authenticated users, server-wide, as Rserve 0.6 did",
            )

    # TLS -----------------------------------------------------------------------

    def _tls_key(self, where: str, value: str) -> None:
        self.tls_files["tls.key"] = value

    def _tls_cert(self, where: str, value: str) -> None:
        self.tls_files["tls.cert"] = value

    def _tls_port(self, where: str, value: str, key: str = "tls.port") -> None:
        if value and satoi(value) > 0:
            self.tls_port, self.tls_port_key = satoi(value), key

    def _qap_tls_port(self, where: str, value: str) -> None:
        self._tls_port(where, value, "qap.tls.port")

    def _switch_qap_tls(self, where: str, value: str) -> None:
        self.tls_switch = is_true(value)

    def _tls_ca(self, where: str, value: str) -> None:
        self.tls_files["tls.ca"] = value

    def _tls_client(self, where: str, value: str) -> None:
        from rexec.compute.supervisor.tls import client_rule_problem

        if client_rule_problem(value):  # as Rserve: an invalid one is ignored, with a warning
            self.warn(where, "tls.client", f"invalid specification {value!r}, ignored")
            return
        self.tls_client = value

    def _qap(self, where: str, value: str, key: str = "qap") -> None:
        self.qap, self.qap_key = is_true(value), key

    def _rserve(self, where: str, value: str) -> None:
        self._qap(where, value, "rserve")

    # the result ----------------------------------------------------------------

    def finish(self, where: str) -> tuple[dict[str, Any], list[str]]:
        settings = dict(self.settings)
        self._finish_network(where, settings)
        self._finish_auth(where, settings)
        self._finish_identity(where, settings)
        self._finish_tls(where, settings)
        if self.evals:
            settings["startup.eval"] = list(self.evals)
        return settings, self.warnings

    def _finish_network(self, where: str, settings: dict[str, Any]) -> None:
        if self.socket:
            self.warn(
                where,
                "socket",
                f"rexec serves TCP only: QAP1 on port {settings.get('server.port', 6311)}, "
                f"not on the Unix socket {self.socket}",
            )
        if self.remote and self.allow and all(a == "127.0.0.1" for a in self.allow):
            return  # Rserve then admits loopback peers only: rexec's default binding
        if self.remote and self.allow:
            self.warn(
                where,
                "allow",
                "rexec does not filter peers by address: with 'remote enable' every "
                "address that reaches the port may connect (use a firewall)",
            )
        if self.remote or self.ipv6:
            settings["server.host"] = ("::" if self.remote else "::1") if self.ipv6 else "0.0.0.0"
        if self.remote and not self.auth:
            self.warn(
                where,
                "remote",
                "enabled without 'auth required': anyone who can reach this machine can "
                "run R code as the shell account (as with Rserve)",
            )

    def _finish_auth(self, where: str, settings: dict[str, Any]) -> None:
        if self.plaintext is not None:
            settings["auth.plaintext"] = self.plaintext
        if self.pwdfile:
            settings["auth.users_file"] = self.pwdfile
        if self.auth_function:
            if self.pwdfile:
                text = f"logins are checked against pwdfile {self.pwdfile} instead"
            else:
                text = "every login is refused (set pwdfile to let users in)"
                settings["auth.users_file"] = os.devnull  # a users file with nobody in it
            self.warn(
                where,
                "auth.function",
                f"rexec does not call R to decide logins ({self.auth_function}); {text}",
            )
        if self.auth and not (self.pwdfile or self.auth_function):
            self.warn(
                where,
                "auth",
                "'auth required' without pwdfile: Rserve lets every user name and password "
                "in; rexec switches authentication off instead (auth.required = false), "
                "which admits the same clients",
            )
            settings["auth.required"] = False
        elif self.auth is not None:
            settings["auth.required"] = self.auth
        if self.pwdfile and not self.plaintext:
            self.warn(
                where,
                "pwdfile",
                "without 'plaintext enable': Rserve takes only crypt logins (ARuc) against "
                "the passwords it stores in clear; rexec refuses passwords stored in clear "
                "unless 'plaintext enable' (auth.plaintext) is set, and then takes plain "
                "and crypt logins (ARpt and ARuc, as Rserve with plaintext)",
            )

    def _finish_identity(self, where: str, settings: dict[str, Any]) -> None:
        if not (self.uid or self.gid):
            return  # not given, or 0: stay as rexec's shell.user settings say
        if os.geteuid() != 0:
            self.warn(
                where,
                "uid",
                "rexec is not started as root, so R shells run as the current user (as "
                "Rserve's setuid would fail)",
            )
            return
        if self.uid:
            try:
                settings["shell.user"] = pwd.getpwuid(self.uid).pw_name
            except KeyError:
                self.warn(
                    where,
                    "uid",
                    f"no account has uid {self.uid}; R shells run as the default account "
                    "(shell.user)",
                )
        if self.gid:
            try:
                settings["shell.group"] = grp.getgrgid(self.gid).gr_name
            except KeyError:
                self.warn(where, "gid", f"no group has gid {self.gid}; the account's own is used")
        if self.su != "now":
            self.warn(
                where,
                "su",
                f"'su {self.su}': Rserve runs the start-up code (source, eval) as root; rexec "
                "runs it, like every session, as the shell account (as 'su now')",
            )

    def _finish_tls(self, where: str, settings: dict[str, Any]) -> None:
        for key, path in self.tls_files.items():
            if path and os.access(path, os.R_OK):
                settings[key] = path
            elif path:
                self.warn(where, key, f"cannot read {path}: TLS is not used (as by Rserve)")
        if not settings.get("tls.cert"):
            if self.tls_port or self.tls_switch or self.tls_client:
                self.warn(
                    where,
                    self.tls_port_key
                    if self.tls_port
                    else ("switch.qap.tls" if self.tls_switch else "tls.client"),
                    "no usable tls.cert: rexec serves no TLS",
                )
            settings.pop("tls.ca", None)
            self._finish_qap(where, settings)
            return
        if self.tls_port:
            settings["tls.port"] = self.tls_port
        if self.tls_switch is not None:
            settings["tls.switch"] = self.tls_switch
        if self.tls_client:
            settings["tls.client"] = self.tls_client
            if self.tls_client != "none" and not settings.get("tls.ca"):
                self.warn(
                    where,
                    "tls.client",
                    "without a usable tls.ca no client certificate can verify (Rserve "
                    "refuses every client then); rexec does not start until tls.ca is set",
                )
        elif settings.get("tls.ca"):
            self.warn(where, "tls.ca", "without tls.client no client certificate is asked for")
            del settings["tls.ca"]  # as Rserve: the CAs alone change nothing
        self._finish_qap(where, settings)

    def _finish_qap(self, where: str, settings: dict[str, Any]) -> None:
        if self.qap is not False:
            return
        if settings.get("tls.port"):
            settings["tls.only"] = True  # as Rserve: QAP on the TLS port only
            return
        self.warn(
            where,
            f"{self.qap_key} disable",
            "without a TLS port rexec still serves QAP1 on server.port (Rserve would serve "
            "nothing)",
        )


#: Keys with a ``_Reader._<key>`` method (dots as underscores).
_HANDLED = frozenset(
    (
        "port",
        "qap.port",
        "remote",
        "ipv6",
        "allow",
        "socket",
        "sockmod",
        "auth",
        "plaintext",
        "pwdfile",
        "auth.function",
        "cachepwd",
        "uid",
        "gid",
        "su",
        "workdir",
        "source",
        "eval",
        "oob",
        "fileio",
        "encoding",
        "maxinbuf",
        "maxsendbuf",
        "shutdown",
        "control",
        "tls.key",
        "tls.cert",
        "tls.port",
        "qap.tls.port",
        "switch.qap.tls",
        "tls.ca",
        "tls.client",
        "qap",
        "rserve",
    )
)


def load_all(paths: Iterable[str | Path]) -> tuple[dict[str, Any], list[str]]:
    """rexec settings equivalent to the files (read in order, as Rserve's ``--RS-conf``
    options are), and one warning for each setting rexec treats differently."""
    reader = _Reader()
    names = []
    for path in paths:
        reader.read(path)
        names.append(str(path))
    return reader.finish(", ".join(names))


def load(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """rexec settings equivalent to one file, and its warnings."""
    return load_all([path])
