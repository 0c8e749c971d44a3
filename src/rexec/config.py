"""Settings, each declared once: the TOML file, the CLI flags and the docs all come from here.

A setting's key is its dotted TOML path (``pool.max`` is ``max`` in the ``[pool]``
table), and its environment variable is ``REXEC_`` and the key in capitals with ``_``
for ``.`` (``REXEC_POOL_MAX``). Precedence: built-in default < config file < environment
< command-line flag (``--rserve-conf`` files count as flags). A variable's text is read
as the setting's type: a number, ``true``/``false`` (or ``1``/``0``, ``yes``/``no``),
text as it is, and a list as a TOML array (``["MASS", "stats4"]``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()

    @property
    def type(self) -> type:
        return type(self.default)

    def validate(self, value: Any) -> Any:
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{self.key}: expected {expected.__name__}, got {value!r}")
        if expected is list and not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{self.key}: expected a list of strings")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.key}: must be one of {', '.join(self.choices)}")
        return value


class ConfigError(ValueError):
    """A config file or flag with an unknown key or a value of the wrong type."""


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "server.host",
        "127.0.0.1",
        "Address to listen on. Loopback only by default (127.0.0.1, and ::1 too).",
    ),
    Setting(
        "server.remote",
        False,
        "Listen on all interfaces. Then authentication is required, unless "
        "`auth.required = false` is set explicitly (which is logged as a warning).",
    ),
    Setting("server.port", 6311, "TCP port (Rserve's default)."),
    Setting(
        "server.shutdown",
        "auth",
        "Who may stop the server with the QAP shutdown command: `disabled`, `auth` "
        "(an authenticated user; with authentication off nobody) or `any` (Rserve's default).",
        ("disabled", "auth", "any"),
    ),
    Setting(
        "server.handshake_timeout",
        10.0,
        "Seconds a new connection has to send its first complete request (after any login). "
        "Until then it holds no R shell, only a socket in the server process.",
    ),
    Setting(
        "server.max_pending",
        256,
        "Most connections at once that have no R shell yet (greeted, waiting for their first "
        "request or for a free shell); one address may hold a quarter of them. Beyond, new "
        "connections are closed at once, with a log line.",
    ),
    Setting(
        "server.shutdown_grace",
        30.0,
        "On SIGTERM (or a shutdown command) running requests get this many seconds to "
        "finish before their shells are killed.",
    ),
    Setting("tls.cert", "", "PEM certificate (chain) for TLS; empty disables TLS."),
    Setting("tls.key", "", "PEM private key for `tls.cert` (read by the server process only)."),
    Setting("tls.port", 0, "A second port whose connections are TLS from the first byte; 0: none."),
    Setting(
        "tls.switch",
        False,
        "Allow Rserve's in-band CMD_switch to TLS on the plain port (advertised in the ID string).",
    ),
    Setting(
        "tls.ca",
        "",
        "PEM bundle of the CAs whose client certificates are accepted (with `tls.client`); "
        "only these, never the system's.",
    ),
    Setting(
        "tls.crl",
        "",
        "PEM file of certificate revocation lists (`X509 CRL` blocks only) for the CAs of "
        "`tls.ca`: a client certificate it revokes fails the handshake. When set, every "
        "CA of `tls.ca` needs its current CRL in it (a client whose CA has none is "
        "refused). Read again on SIGHUP.",
    ),
    Setting(
        "tls.client",
        "none",
        "Client certificates, as Rserve's `tls.client`: `none` (not asked for), `request` "
        "(asked for; one that is shown must verify against `tls.ca`), `require` (a "
        "connection without a valid one fails the handshake), or required and its subject's "
        "common name checked: `match:NAME[,NAME...]`, `prefix:TEXT`, `suffix:TEXT` (a "
        "mismatch is closed before the greeting). On `tls.port` and after `tls.switch`.",
    ),
    Setting(
        "tls.only",
        False,
        "Serve QAP on `tls.port` only: no plain listener on `server.port` (Rserve's `qap "
        "disable` with a TLS port). With `tls.client = require` every connection then "
        "shows a client certificate of `tls.ca` before its first byte of QAP.",
    ),
    Setting(
        "shell.user",
        "",
        "Account R shells run as when the server starts as root. Empty: the `rexec` system "
        "account (see `make run`).",
    ),
    Setting("shell.group", "", "Group for the shells; empty: the account's own group."),
    Setting(
        "shell.allow_root",
        False,
        "Allow R shells to run as root (`--allow-root`). Never needed in production.",
    ),
    Setting(
        "shell.threads",
        0,
        "BLAS (OpenBLAS) and OpenMP threads of each R shell, set in every shell through the "
        "libraries' own calls and in `OPENBLAS_NUM_THREADS` / `OMP_NUM_THREADS`. 0: the "
        "usable CPUs (the affinity mask, at most the control group's CPU quota rounded up) "
        "divided by `pool.max`, at least 1 (a full pool uses each CPU once). Start-up "
        "code runs before, with OpenBLAS's default: all cores, unless `rexec serve`'s "
        "environment sets `OPENBLAS_NUM_THREADS` (docs/performance.md).",
    ),
    Setting(
        "pool.direct_accept",
        True,
        "Idle R shells accept plain-port connections themselves (one process less on the "
        "path, no hand-over); the server process accepts only when no shell is idle, and "
        "takes back connections that send nothing within `server.first_request_wait`. Off, "
        "or with a users file (`auth.users_file`) or `tls.switch`, the server process admits "
        "every connection.",
    ),
    Setting(
        "server.first_request_wait",
        0.5,
        "Seconds an idle shell that accepted a connection waits for the first request before "
        "handing the connection back to the server process (which then waits up to "
        "`server.handshake_timeout` holding no shell).",
    ),
    Setting(
        "pools.max",
        16,
        "Most named pools (published service versions, each with its own template) a "
        "compute node runs besides its default pool.",
    ),
    Setting(
        "pools.max_data",
        256 * 1024 * 1024,
        "Largest data (a published service's snapshot and model, in bytes) a pool definition "
        "may carry for its template to restore.",
    ),
    Setting("pool.initial", 2, "Idle R shells kept started and ready for new connections."),
    Setting("pool.max", 8, "Most R shells alive at once (idle + busy + starting)."),
    Setting(
        "pool.memory_per_shell",
        0,
        "Bytes of memory one R shell is given when the pool is sized from memory; 0: off. "
        "Above 0, `pool.max` becomes (memory - `pool.memory_reserved`) / this, where memory "
        "is the control group's limit (a container's) or else the machine's RAM; an explicit "
        "`pool.max` is then the most it may be. Start-up fails when not one shell fits.",
    ),
    Setting(
        "pool.memory_reserved",
        512 * 1024 * 1024,
        "Bytes kept for the supervisor and the template when the pool is sized from memory "
        "(`pool.memory_per_shell`).",
    ),
    Setting(
        "pool.wait_timeout",
        10.0,
        "Seconds a new connection waits for a shell when all are busy before it is refused.",
    ),
    Setting(
        "pool.mode",
        "fork" if hasattr(os, "fork") else "spawn",
        "`fork`: shells are forked from a warm template R that already ran the start-up "
        "code. `spawn`: each shell is a new process that starts R itself (no fork; Windows).",
        ("fork", "spawn"),
    ),
    Setting("startup.packages", [], "Packages every session starts with (`library()`-ed once)."),
    Setting("startup.source", [], "R files `source()`-d once at start-up, in order."),
    Setting("startup.eval", [], "R expressions evaluated once at start-up, in order."),
    Setting("r.args", ["--vanilla", "--quiet"], "Arguments R is initialised with."),
    Setting(
        "auth.required",
        False,
        "Require a QAP login, checked against `auth.users_file`, before any command.",
    ),
    Setting(
        "auth.users_file",
        "",
        "Users file: `rexec users add` stores argon2 hashes; an Rserve password file "
        "(`pwdfile`) works too, its entries need `auth.plaintext`.",
    ),
    Setting(
        "auth.plaintext",
        False,
        "Rserve's `plaintext enable`: accept users-file passwords stored as Rserve stores "
        "them (in clear, `$md5`, `$sha1`), sent in clear or crypt()ed with the "
        "connection's salt (the ID string then offers `ARuc` and `ARpt`, as Rserve). Off: "
        "such entries are refused and logged.",
    ),
    Setting(
        "auth.remember_verified",
        300.0,
        "Seconds a password checked against an argon2 entry of the users file is remembered "
        "(as an HMAC under a key held only in the server's memory; a changed password is "
        "not), so a client that opens many connections (a web node) pays argon2 once, "
        "not per connection. 0: every login runs argon2.",
    ),
    Setting(
        "session.workdir",
        "",
        "Parent of the per-session working directories (`conn<pid>`, removed when the "
        "session ends). Empty: `<system temp>/rexec`.",
    ),
    Setting(
        "session.detach_timeout",
        300.0,
        "Seconds a detached session (detachSession, detachedVoidEval) waits to be "
        "re-attached before it ends.",
    ),
    Setting(
        "session.detach_max",
        2,
        "Most detached sessions at once. They live outside `pool.max`, so detaching never "
        "takes shells from new connections; a detach beyond this gets ERR_detach_failed.",
    ),
    Setting(
        "session.park_timeout",
        3600.0,
        "Longest a parked session (rexec: detachSession with a timeout, resumed by "
        "attachSession on the server's port; web nodes park sessions between requests) "
        "waits to be resumed before it ends. Parked sessions count in `pool.max`.",
    ),
    Setting("session.fileio", True, "Allow the QAP file commands (openFile ... removeFile)."),
    Setting(
        "session.encoding",
        "native",
        "String encoding on the wire until a client sends setEncoding, as Rserve's `encoding`: "
        "`native` (strings from clients unmarked; R's locale is UTF-8), `utf8` (marked UTF-8) "
        "or `latin1`.",
        ("native", "utf8", "latin1"),
    ),
    Setting(
        "session.oob",
        False,
        "Let R code send out-of-band messages to the client with self.oobSend() and "
        "self.oobMessage() (Rserve's `oob enable`).",
    ),
    Setting(
        "session.console_oob",
        False,
        "Send R's console output to the client as it is written, as OOB_SEND messages "
        '`list("console.out", text)` (or `"console.err"`), a line at a time (the '
        "shape of Rserve's `console.oob`, which Rserve applies to OCAP only). A session "
        "may switch it on for itself with `options(rexec.console.oob = TRUE)` (from its "
        "next request on).",
    ),
    Setting(
        "control.enabled",
        False,
        "Allow the control commands ctrlEval, ctrlSource and ctrlShutdown (server-wide: "
        "they change what every new session starts from) for authenticated users.",
    ),
    Setting(
        "limits.maxinbuf",
        256 * 1024 * 1024,
        "Largest accepted request payload in bytes; larger ones are discarded and answered "
        "with ERR_data_overflow (0x4b), as in Rserve.",
    ),
    Setting(
        "limits.maxsendbuf",
        2 * 1024 * 1024 * 1024,
        "Largest reply payload in bytes; a larger result is answered with "
        "ERR_object_too_big (0x4c) and the size it would need, as Rserve's `maxsendbuf`. "
        "0: no limit.",
    ),
    Setting(
        "limits.memory",
        8 * 1024 * 1024 * 1024,
        "Address space of one R shell in bytes (RLIMIT_AS); an allocation beyond it is an "
        'R error ("cannot allocate vector"). 0: no limit.',
    ),
    Setting(
        "limits.cpu_seconds",
        3600,
        "CPU seconds one session may use; then its evaluation is interrupted and the "
        "connection closed. 0: no limit.",
    ),
    Setting(
        "limits.eval_timeout",
        3600.0,
        "Wall-clock seconds one request may run; then it is interrupted (status 127), and "
        "if R does not stop within 5 s more the shell is ended. 0: no limit.",
    ),
    Setting(
        "limits.idle_timeout",
        3600.0,
        "Seconds a connection may wait between requests before it is closed. 0: no limit.",
    ),
    Setting("log.level", "info", "Log level.", ("debug", "info", "warning", "error")),
    Setting(
        "log.commands",
        False,
        "Log one line per QAP command (session, command, bytes, duration, outcome). Off by "
        "default: it costs throughput on small evaluations.",
    ),
    Setting(
        "metrics.host",
        "127.0.0.1",
        "Address the Prometheus metrics endpoint (`GET /metrics`, docs/operations.md) "
        "listens on. Loopback by default; R shells on the same machine can reach it too.",
    ),
    Setting(
        "metrics.port",
        9311,
        "Port of the Prometheus metrics endpoint; 0: none. If this default address is "
        "taken the node logs it and runs without metrics; any other must be free (or the "
        "node does not start). The same endpoint answers `GET /healthz` (the supervisor "
        "serves) and `GET /readyz` (200 once the pool is up, 503 while it starts, stops or "
        "its shells fail to start).",
    ),
    Setting(
        "register.url",
        "",
        "Web node URL(s) this compute node registers with at start and keeps its "
        "registration fresh at (`POST /computenodes/register`; several separated by "
        "spaces are tried in turn). Empty: no self-registration (an Owner registers the "
        "node, or web.toml lists it). Stopping drains it in the registry (docs/deploy.md).",
    ),
    Setting(
        "register.token_file",
        "",
        "File holding the web nodes' registration token (their "
        "`nodes.registration_token`), read at every attempt. Where R shells run as the "
        "server's own user they can read it: then register from a separate process "
        "(`rexec register`).",
    ),
    Setting(
        "register.host",
        "",
        "Name or address the web nodes reach this node at (with `server.port`). Empty: "
        "the host name.",
    ),
    Setting(
        "register.user",
        "",
        "The QAP login the web nodes are to use here (a user of `auth.users_file`). "
        "Empty: none (then they cannot publish services here).",
    ),
    Setting(
        "register.password_file",
        "",
        "File holding `register.user`'s password (sent to the web nodes, which keep it "
        "sealed under `nodes.secret`), read at every attempt.",
    ),
    Setting(
        "register.interval",
        60.0,
        "Seconds between re-registrations (an Owner's removal, a new database or a "
        "changed `pool.max` is made good by the next one). While no web node answers, "
        "attempts back off from 1 s up to this.",
    ),
)

_BY_KEY = {setting.key: setting for setting in SETTINGS}


class Config(Mapping[str, Any]):
    """An immutable, validated view of every setting."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        merged = {s.key: s.default for s in SETTINGS}
        #: Keys given explicitly (by a file or a flag), as opposed to defaults.
        self.explicit = frozenset(values or ())
        for key, value in (values or {}).items():
            if key not in _BY_KEY:
                raise ConfigError(f"unknown setting {key!r}")
            merged[key] = _BY_KEY[key].validate(value)
        self._values = merged

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed; keys use ``_`` for ``.`` (``pool_max=4``).
        The changed keys count as explicit, the others keep their standing."""
        values = dict(self._values)
        keys = {name.replace("__", ".").replace("_", ".", 1) for name in changes}
        for name, value in changes.items():
            values[name.replace("__", ".").replace("_", ".", 1)] = value
        copy = Config(values)
        copy.explicit = self.explicit | keys
        return copy

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def workdir(self) -> Path:
        import tempfile

        return Path(self["session.workdir"] or Path(tempfile.gettempdir()) / "rexec")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def env_name(key: str) -> str:
    """The environment variable of setting ``key``: ``pool.max`` is ``REXEC_POOL_MAX``."""
    return "REXEC_" + key.upper().replace(".", "_")


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings ``REXEC_*`` variables set, as values of their settings' types."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        variable = env_name(setting.key)
        raw = environ.get(variable)
        if raw is not None:
            try:
                values[setting.key] = setting.validate(_from_text(setting, raw))
            except ConfigError as error:
                raise ConfigError(f"{variable}: {error}") from None
    return values


def text_value(raw: str, expected: type) -> Any:
    """An environment variable's text as a value of type ``expected`` (what both node
    types' variables mean); ValueError when it is not one."""
    if expected is bool:
        lowered = raw.strip().lower()
        if lowered not in {"true", "false", "1", "0", "yes", "no"}:
            raise ValueError(raw)
        return lowered in {"true", "1", "yes"}
    if expected is int:
        return int(raw)
    if expected is float:
        return float(raw)
    if expected is list:
        return tomllib.loads(f"value = {raw}")["value"]  # TOMLDecodeError is a ValueError
    return raw


def _from_text(setting: Setting, raw: str) -> Any:
    try:
        return text_value(raw, setting.type)
    except ValueError:
        shape = {bool: "true or false", int: "an integer", float: "a number"}
        wanted = shape.get(setting.type, 'a TOML array of strings (["a", "b"])')
        raise ConfigError(f"expected {wanted}, got {raw!r}") from None


def load(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Defaults, then the TOML file at ``path`` (if any), then the ``REXEC_*`` variables
    of ``environ`` (the process's own by default), then non-None ``overrides``."""
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as handle:
            values.update(_flatten(tomllib.load(handle)))
    values.update(from_environment(environ))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Config(values)


def reference_table() -> str:
    """The configuration reference as a Markdown table (kept in README.md, checked by a test)."""
    rows = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = _toml_value(s.default)
        rows.append(f"| `{s.key}` | `{env_name(s.key)}` | `{default}` | {s.doc} |")
    return "\n".join(rows)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
