"""The web node's settings, each declared once: the TOML file, the ``REXEC_WEB_*``
variables, the flags and the README table all come from the field declarations below.

Every field of :class:`WebSettings` (and of :class:`ComputeNode`) is declared with
:func:`setting`: its TOML key, default and doc; its type is the field's annotation.
``load_web_settings(path, overrides)`` reads them, in this order (later wins):

1. the built-in defaults;
2. the TOML file (``rexec web --config web.toml``): keys are dotted paths, so
   ``services.pool_max`` is ``pool_max`` in a ``[services]`` table (or the dotted key
   itself at the top level); compute nodes are an array of tables, one ``[[compute]]``
   per node, with ``host``, ``port``, ``user``, ``password`` or ``password_file`` (a
   file whose content is the password; relative to the TOML file), ``pool_max``,
   ``reserve`` and the ``tls*`` keys (files relative to the TOML file too); unknown
   keys and values of the wrong type are errors naming the key and the file;
3. ``REXEC_WEB_<NAME>`` variables, ``<NAME>`` being the attribute's name in capitals
   (``REXEC_WEB_SERVICE_POOL_MAX``), for every setting but the compute nodes;
4. explicit overrides (the command-line flags), by attribute name.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

from rexec.config import ConfigError, text_value

__all__ = [
    "ComputeNode",
    "ConfigError",
    "WebSettings",
    "compute_reference_rows",
    "load_web_settings",
    "read_web_toml",
    "web_reference_table",
]


def setting(
    key: str,
    default: Any = MISSING,
    doc: str = "",
    *,
    factory: Any = MISSING,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    repr: bool = True,
) -> Any:
    """A dataclass field declaring one setting: TOML ``key``, ``default``, ``doc``."""
    metadata = {"key": key, "doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata, repr=repr)
    return field(default=default, metadata=metadata, repr=repr)


@dataclass(frozen=True, slots=True)
class ComputeNode:
    """A compute node (``rexec serve``) the web node opens sessions on.

    ``capacity`` is how many sessions this web node may hold there: the node's
    ``pool.max`` less ``reserve`` shells kept free so a cancel (which needs a
    connection of its own) always gets through.
    """

    host: str = setting("host", "127.0.0.1", "The compute node's address.")
    port: int = setting("port", 6311, "Its QAP port.", minimum=1, maximum=65535)
    user: str | None = setting(
        "user",
        None,
        "The web node's QAP login there (publishing services needs one: defining a "
        "service's pool is a verified user's command). None: no login.",
    )
    password: str | None = setting(
        "password", None, "Its password (or `password_file`).", repr=False
    )
    pool_max: int = setting(
        "pool_max", 8, "The node's `pool.max` (how many R shells it runs at most).", minimum=1
    )
    reserve: int = setting(
        "reserve",
        1,
        "Shells of the node this web node leaves free, so that a cancel (which needs a "
        "connection of its own) always gets one.",
        minimum=0,
    )
    password_file: str = setting(
        "password_file",
        "",
        "A file whose content (less trailing newlines) is the password, read at start-up, "
        "so the secret need not sit in the TOML file; relative to the TOML file.",
    )
    tls: bool = setting(
        "tls",
        False,
        "Reach the node over TLS from the first byte: `port` is then its `tls.port`. Its "
        "certificate is verified (`tls_ca`) for the name `tls_server_name`.",
    )
    tls_ca: str = setting(
        "tls_ca",
        "",
        "PEM bundle of the CAs the node's certificate is checked against; empty: "
        "`compute_tls.ca`, and if that is empty too the system's CAs.",
    )
    tls_cert: str = setting(
        "tls_cert",
        "",
        "The web node's client certificate (PEM, with its chain) for a node with "
        "`tls.client = require`; empty: `compute_tls.cert` (empty too: none).",
    )
    tls_key: str = setting(
        "tls_key",
        "",
        "The private key of `tls_cert`; empty: in `tls_cert`'s file. Relative to the TOML "
        "file, as `tls_ca` and `tls_cert`.",
    )
    tls_crl: str = setting(
        "tls_crl",
        "",
        "PEM file of CRLs (`X509 CRL` blocks only) the node's certificate is checked "
        "against: one it revokes is refused, and its CA needs a CRL in the file; empty: "
        "`compute_tls.crl` (empty too: no revocation check).",
    )
    tls_server_name: str = setting(
        "tls_server_name",
        "",
        "The name the node's certificate must carry (SNI too); empty: `host`.",
    )

    def __post_init__(self) -> None:
        self._check_tls()
        if not self.password_file:
            return
        try:
            content = Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as error:
            raise ConfigError(f"password_file {self.password_file!r}: {error}") from None
        if not content:
            raise ConfigError(f"password_file {self.password_file!r} is empty")
        if self.password is not None and self.password != content:
            raise ConfigError(f"{self.name}: give password or password_file, not both")
        object.__setattr__(self, "password", content)

    def _check_tls(self) -> None:
        given = [k for k in TLS_KEYS if getattr(self, k)]
        if given and not self.tls:
            raise ConfigError(f"{self.name}: {', '.join(given)} without tls = true")
        if self.tls_key and not self.tls_cert:
            raise ConfigError(f"{self.name}: tls_key without tls_cert")
        for key in TLS_FILES:
            readable_file(getattr(self, key), f"{self.name}: {key}")

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def capacity(self) -> int:
        return max(1, self.pool_max - self.reserve)


@dataclass(frozen=True, slots=True)
class WebSettings:
    host: str = setting("server.host", "127.0.0.1", "Address the REST API listens on.")
    port: int = setting("server.port", 12800, "HTTP port.", minimum=1, maximum=65535)
    max_upload: int = setting(
        "server.max_upload",
        256 * 1024 * 1024,
        "Largest request body accepted for uploads (bytes).",
        minimum=0,
    )
    retry_after: int = setting(
        "server.retry_after",
        5,
        "Seconds a 503 answer (every compute node full) tells the client to wait (`Retry-After`).",
        minimum=0,
    )
    connect_timeout: float = setting(
        "server.compute_connect_timeout",
        5.0,
        "Seconds to wait for a compute node's greeting (it queues us while its pool is full).",
        minimum=0,
    )
    log_level: str = setting(
        "log.level", "info", "Log level.", choices=("debug", "info", "warning", "error")
    )
    database_url: str = setting(
        "database.url",
        "sqlite:///rexec-web.db",
        "SQLAlchemy URL; `postgresql://` URLs use psycopg 3. Web nodes sharing a "
        "PostgreSQL database share users, sessions' records, services and the batch queue.",
    )
    compute_nodes: tuple[ComputeNode, ...] = setting(
        "compute",
        factory=lambda: (ComputeNode(),),
        doc="The compute nodes: one `[[compute]]` table each, with the keys below. "
        "Default: one node with the defaults below; `compute = []`: none but those in the "
        "registry (`/computenodes`, self-registered ones).",
    )
    jwt_secret: str = setting(
        "auth.jwt_secret",
        "",
        "HS256 key for access tokens; empty: generated once and kept in the database, so "
        "every web node sharing the database accepts every token.",
        repr=False,
    )
    access_token_ttl: int = setting(
        "auth.access_token_ttl", 3600, "Seconds an access token is valid.", minimum=1
    )
    refresh_token_ttl: int = setting(
        "auth.refresh_token_ttl",
        14 * 24 * 3600,
        "Seconds a refresh token is valid.",
        minimum=1,
    )
    login_delay_base: float = setting(
        "auth.login_delay_base",
        0.25,
        "Delay after the n-th consecutive failed login of a user: "
        "min(`login_delay_base` * 2 ** (n - 1), `login_delay_max`) seconds.",
        minimum=0,
    )
    login_delay_max: float = setting(
        "auth.login_delay_max", 8.0, "Longest delay after failed logins (seconds).", minimum=0
    )
    session_idle_timeout: float = setting(
        "sessions.idle_timeout",
        3600.0,
        "Seconds a session may stay unused before it is closed (its R shell freed).",
        minimum=0,
    )
    execution_timeout: float = setting(
        "sessions.execution_timeout",
        3600.0,
        "Seconds one session execution may run; then it is interrupted (the session stays) "
        "and the request answered 504. 0: no limit (the compute node's limits.eval_timeout "
        "still applies).",
        minimum=0,
    )
    heartbeat_interval: float = setting(
        "server.heartbeat_interval",
        5.0,
        "Seconds between this web node's heartbeats in the database (the web nodes in "
        "/status; on SQLite, a second live web node is refused at start).",
        minimum=0.1,
    )
    service_pool_initial: int = setting(
        "services.pool_initial",
        1,
        "Idle shells a new published service version gets on each compute node.",
        minimum=0,
    )
    service_pool_max: int = setting(
        "services.pool_max",
        4,
        "Most shells a new service version gets on each compute node.",
        minimum=1,
    )
    service_pool_limit: int = setting(
        "services.pool_limit",
        16,
        "Largest maxPoolSize `POST /services/{name}/{version}/pool` accepts.",
        minimum=1,
    )
    service_recycle_after: int = setting(
        "services.recycle_after",
        100,
        'Calls one shell serves (isolation "shell") before it is replaced by a fresh one.',
        minimum=1,
    )
    service_wait: float = setting(
        "services.wait",
        5.0,
        "Seconds a call waits for a free shell of its service before 503.",
        minimum=0,
    )
    service_timeout: float = setting(
        "services.timeout", 60.0, "Default per-call timeout of a service (seconds).", minimum=0
    )
    service_max_timeout: float = setting(
        "services.max_timeout",
        3600.0,
        "Largest per-call timeout a service may set (seconds).",
        minimum=0,
    )
    service_max_init_code: int = setting(
        "services.max_init_code",
        40 * 1024,
        "Largest initCode (characters; it travels to the compute node with the pool).",
        minimum=0,
    )
    service_max_data: int = setting(
        "services.max_data",
        256 * 1024 * 1024,
        "Largest snapshot + model data of a service (bytes).",
        minimum=0,
    )
    service_define_timeout: float = setting(
        "services.define_timeout",
        300.0,
        "Seconds a compute node has to start a service's template (restore + initCode).",
        minimum=0,
    )
    service_cache_ttl: float = setting(
        "services.cache_ttl",
        2.0,
        "Seconds a service record is cached by the call path (PATCH and DELETE on another "
        "web node take this long to be seen here).",
        minimum=0,
    )
    service_reconcile_interval: float = setting(
        "services.reconcile_interval",
        30.0,
        "Seconds between checks that every compute node runs the pools of every service.",
        minimum=0,
    )
    batch_parallel_max: int = setting(
        "batch.parallel_max", 8, "Largest parallelCount of a batch.", minimum=1
    )
    batch_workers: int = setting(
        "batch.workers", 8, "Batch items this web node runs at once.", minimum=1
    )
    batch_lease: float = setting(
        "batch.lease",
        30.0,
        "Seconds a running batch item's claim lasts without renewal: a web node that "
        "stopped loses its items after this long, and they fail (they never run twice).",
        minimum=0,
    )
    node_check_interval: float = setting(
        "nodes.check_interval",
        5.0,
        "Seconds between this web node's checks of every compute node (health, pools).",
        minimum=0,
    )
    node_forget_after: float = setting(
        "nodes.forget_after",
        600.0,
        "Seconds after which a compute node that drained itself when it stopped (a "
        "self-registered node, `register.*`) and has been down since is removed from the "
        "registry: a pod scaled away. One an Owner added or drained, or one that stopped "
        "without draining (killed, cut off), stays. 0: never.",
        minimum=0,
    )
    node_secret: str = setting(
        "nodes.secret",
        "",
        "Secret shared by the web nodes that seals the compute nodes' logins in the "
        "registry; empty on SQLite: a key file next to the database (rexec.web.nodes).",
        repr=False,
    )
    registration_token: str = setting(
        "nodes.registration_token",
        "",
        "Token the web nodes share that lets compute nodes register themselves "
        "(`POST /computenodes/register`, `register.*` on the compute node); at least 16 "
        "characters (`openssl rand -hex 32`). Empty: compute nodes cannot register "
        "themselves (404). Never stored in the database.",
        repr=False,
    )
    registration_token_file: str = setting(
        "nodes.registration_token_file",
        "",
        "A file whose content (less trailing newlines) is `nodes.registration_token`, "
        "read at start-up; relative to the TOML file.",
    )
    compute_tls_ca: str = setting(
        "compute_tls.ca",
        "",
        "PEM bundle of the CAs compute nodes' certificates are checked against, for "
        "`[[compute]]` nodes with `tls = true` and no `tls_ca` and for the registry's "
        "nodes with `compute_tls.registry`; empty: the system's CAs. Relative to the TOML "
        "file, as the next two.",
    )
    compute_tls_cert: str = setting(
        "compute_tls.cert",
        "",
        "The web node's client certificate (PEM, with its chain) for compute nodes over "
        "TLS that give no `tls_cert` (and for the registry's nodes); empty: none.",
    )
    compute_tls_key: str = setting(
        "compute_tls.key",
        "",
        "The private key of `compute_tls.cert`; empty: in the certificate's file.",
    )
    compute_tls_crl: str = setting(
        "compute_tls.crl",
        "",
        "PEM file of CRLs (`X509 CRL` blocks only) compute nodes' certificates are checked "
        "against, for `[[compute]]` nodes with `tls = true` and no `tls_crl` and for the "
        "registry's nodes over TLS: a certificate it revokes is refused (the node is then "
        "down), and each CA needs a CRL in the file; empty: no revocation check. Loaded "
        "again when it changes, as the other files.",
    )
    compute_tls_registry: bool = setting(
        "compute_tls.registry",
        False,
        "Reach every compute node of the registry (`/computenodes`, self-registered ones) "
        "over TLS with the `compute_tls.*` files, checking its certificate for its host "
        "name: their registered port is then their `tls.port`.",
    )

    def __post_init__(self) -> None:
        if self.registration_token_file:
            where = f"nodes.registration_token_file {self.registration_token_file!r}"
            try:
                path = Path(self.registration_token_file)
                content = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as error:
                raise ConfigError(f"{where}: {error.strerror or error}") from None
            if not content:
                raise ConfigError(f"{where} is empty")
            if self.registration_token and self.registration_token != content:
                raise ConfigError(
                    "give nodes.registration_token or nodes.registration_token_file, not both"
                )
            object.__setattr__(self, "registration_token", content)
        if self.registration_token and len(self.registration_token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"nodes.registration_token: at least {MIN_TOKEN_LENGTH} characters "
                "(openssl rand -hex 32)"
            )

    def with_env(self, environ: Mapping[str, str] | None = None) -> WebSettings:
        """Override scalar settings from ``REXEC_WEB_<NAME>`` variables."""
        environ = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for f in fields(self):
            variable = env_name(f)
            raw = environ.get(variable) if variable else None
            if raw is not None:
                changes[f.name] = _from_text(f, raw, variable)
        return replace(self, **changes)


# ---------------------------------------------------------------- the declarations


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_WEB_TYPES = _hints(WebSettings)
_NODE_TYPES = _hints(ComputeNode)
#: WebSettings fields by TOML key (``server.port``); the compute nodes are ``compute``.
_BY_KEY: dict[str, Field[Any]] = {f.metadata.get("key", f.name): f for f in fields(WebSettings)}
_NODE_BY_KEY: dict[str, Field[Any]] = {
    f.metadata.get("key", f.name): f for f in fields(ComputeNode)
}
_COMPUTE = "compute"
#: Shortest nodes.registration_token accepted.
MIN_TOKEN_LENGTH = 16


#: ComputeNode's TLS keys, and those that name files (relative to the TOML file).
TLS_KEYS = ("tls_ca", "tls_cert", "tls_key", "tls_crl", "tls_server_name")
TLS_FILES = ("tls_ca", "tls_cert", "tls_key", "tls_crl")
#: WebSettings' TLS files (relative to the TOML file).
WEB_TLS_FILES = ("compute_tls_ca", "compute_tls_cert", "compute_tls_key", "compute_tls_crl")


def readable_file(path: str, where: str) -> None:
    """ConfigError unless ``path`` is empty or a file this process can read."""
    if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise ConfigError(f"{where}: cannot read {path!r}")


def key_of(f: Field[Any]) -> str:
    return f.metadata.get("key", f.name)


def env_name(f: Field[Any]) -> str | None:
    """The ``REXEC_WEB_*`` variable of a WebSettings field (None for the compute nodes)."""
    if f.name == "compute_nodes":
        return None
    return f"REXEC_WEB_{f.name.upper()}"


def _scalar_type(f: Field[Any], hints: Mapping[str, Any]) -> tuple[type, bool]:
    """The field's type and whether None is allowed (``str | None``)."""
    hint = hints[f.name]
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        return args[0], True
    return hint, False


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _check(f: Field[Any], value: Any, where: str, hints: Mapping[str, Any]) -> Any:
    """``value`` as the type of field ``f``, or a ConfigError naming ``where``."""
    expected, optional = _scalar_type(f, hints)
    if value is None and optional:
        return None
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    wrong_type = not isinstance(value, expected) or (
        expected is not bool and isinstance(value, bool)
    )
    if wrong_type:
        name = _TYPE_NAMES.get(expected, expected.__name__)
        raise ConfigError(f"{where}: expected {name}, got {value!r}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: must be one of {', '.join(meta['choices'])}, not {value!r}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(f"{where}: must be at least {meta['minimum']}, not {value!r}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"{where}: must be at most {meta['maximum']}, not {value!r}")
    return value


def _from_text(f: Field[Any], raw: str, where: str) -> Any:
    """An environment variable's text as the value of field ``f``."""
    expected, _ = _scalar_type(f, _WEB_TYPES)
    try:
        value = text_value(raw, expected)
    except ValueError:
        name = _TYPE_NAMES.get(expected, expected.__name__)
        raise ConfigError(f"{where}: expected {name}, got {raw!r}") from None
    return _check(f, value, where, _WEB_TYPES)


def _unknown(key: str, known: typing.Iterable[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown setting {key!r}{hint}")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted != _COMPUTE:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _compute_nodes(value: Any, source: str, base: Path) -> tuple[ComputeNode, ...]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(
            f"{source}: compute: expected an array of tables, one [[compute]] per node"
        )
    nodes = []
    for index, table in enumerate(value):
        where = f"{source}: compute[{index}]"
        values: dict[str, Any] = {}
        for key, item in table.items():
            if key not in _NODE_BY_KEY:
                raise _unknown(key, _NODE_BY_KEY, where)
            f = _NODE_BY_KEY[key]
            values[f.name] = _check(f, item, f"{where}.{key}", _NODE_TYPES)
        if values.get("password_file"):
            if "password" in values:
                raise ConfigError(f"{where}: give password or password_file, not both")
            values["password_file"] = str(base / Path(values["password_file"]).expanduser())
        for key in TLS_FILES:
            if values.get(key):
                values[key] = str(base / Path(values[key]).expanduser())
        try:
            nodes.append(ComputeNode(**values))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    return tuple(nodes)  # `compute = []`: none but the registry's


def read_web_toml(path: Path) -> dict[str, Any]:
    """The settings a TOML file gives, by attribute name (validated)."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{source}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    values: dict[str, Any] = {}
    for key, value in _flatten(document).items():
        if key not in _BY_KEY:
            raise _unknown(key, _BY_KEY, source)
        f = _BY_KEY[key]
        if key == _COMPUTE:
            values[f.name] = _compute_nodes(value, source, Path(path).parent)
        elif f.name == "registration_token_file" and value:
            checked = _check(f, value, f"{source}: {key}", _WEB_TYPES)
            values[f.name] = str(Path(path).parent / Path(checked).expanduser())
        else:
            values[f.name] = _check(f, value, f"{source}: {key}", _WEB_TYPES)
    for name in WEB_TLS_FILES:
        if values.get(name):
            values[name] = str(Path(path).parent / Path(values[name]).expanduser())
    return values


def load_web_settings(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> WebSettings:
    """Defaults < the TOML file at ``path`` < ``REXEC_WEB_*`` < ``overrides``.

    ``overrides`` are by attribute name (``service_pool_max``) or TOML key
    (``services.pool_max``); None values are no override (an unset flag).
    """
    settings = WebSettings()
    if path is not None:
        values = read_web_toml(Path(path))
        try:
            settings = replace(settings, **values)
        except ConfigError as error:  # a file it names (nodes.registration_token_file)
            raise ConfigError(f"{path}: {error}") from None
    settings = settings.with_env(environ)
    changes: dict[str, Any] = {}
    by_name = {f.name: f for f in fields(WebSettings)}
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        f = by_name.get(name) or _BY_KEY.get(name)
        if f is None:
            raise _unknown(name, by_name, "override")
        if f.name == "compute_nodes":
            value = tuple(value)
            if not all(isinstance(n, ComputeNode) for n in value):
                raise ConfigError("compute_nodes: expected ComputeNode values")
        else:
            value = _check(f, value, key_of(f), _WEB_TYPES)
        changes[f.name] = value
    return replace(settings, **changes)


# ---------------------------------------------------------------- the reference table


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def compute_reference_rows() -> list[str]:
    rows = []
    for f in fields(ComputeNode):
        default = "unset" if f.default is None else f"`{_toml_value(f.default)}`"
        rows.append(f"| `[[compute]]` `{key_of(f)}` | | {default} | {f.metadata['doc']} |")
    return rows


def web_reference_table() -> str:
    """Every web node setting as a Markdown table (kept in README.md, checked by a test)."""
    rows = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for f in fields(WebSettings):
        doc = f.metadata.get("doc", "")
        if f.name == "compute_nodes":
            rows.append(f"| `[[compute]]` | | one node | {doc} |")
            rows.extend(compute_reference_rows())
            continue
        choices = f.metadata.get("choices")
        if choices:
            doc += " One of " + ", ".join(f"`{c}`" for c in choices) + "."
        default = _toml_value(f.default)
        rows.append(f"| `{key_of(f)}` | `{env_name(f)}` | `{default}` | {doc} |")
    return "\n".join(rows)
