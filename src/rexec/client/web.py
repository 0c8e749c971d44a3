"""A Python client for the web node's published services (docs/services.md).

>>> from rexec.client import login
>>> web = login("http://127.0.0.1:12800", "admin", "secret")
>>> web.publish_service(
...     "add", "z <- x + y", version="1",
...     inputs={"x": "numeric", "y": "numeric"}, outputs={"z": "numeric"},
... ).version
'1'
>>> web.service("add", "1")(x=1, y=2).outputs["z"]
3.0

Outputs come back as Python values by their declared type: a ``data.frame`` as a pandas
DataFrame (``{column: [values]}`` without pandas), a ``matrix`` as a numpy array; R's NA
is ``None`` (NaN in a DataFrame or numeric array). Inputs may be pandas DataFrames and
Series, numpy arrays and scalars, dates; NaN and None are sent as JSON null (R's NA).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "BatchError",
    "Service",
    "ServiceError",
    "ServiceInfo",
    "ServiceResult",
    "WebClient",
    "WebError",
    "login",
]

DEFAULT_URL = "http://127.0.0.1:12800"
TERMINAL_STATES = ("complete", "failed", "cancelled")
ProgressCallback = Callable[[int, int, str], object]


class WebError(Exception):
    """An HTTP error from the web node: ``status`` and the server's ``message``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}

    @property
    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds, when the server sent one (503)."""
        try:
            return float(self.headers["retry-after"])
        except (KeyError, ValueError):
            return None


class ServiceError(Exception):
    """A service call whose R code failed (``success: false``): R's ``message`` and the
    ``console`` output up to the error; ``result`` is the whole :class:`ServiceResult`."""

    def __init__(self, message: str, console: str = "", result: ServiceResult | None = None):
        super().__init__(message)
        self.message = message
        self.console = console
        self.result = result


class BatchError(Exception):
    """A batch that ended ``failed`` or ``cancelled``; ``results`` holds what finished
    (``None`` for the items that did not)."""

    def __init__(self, batch_id: str, state: str, results: list[ServiceResult | None]) -> None:
        done = sum(r is not None for r in results)
        super().__init__(f"batch {batch_id} {state} ({done} of {len(results)} items finished)")
        self.batch_id = batch_id
        self.state = state
        self.results = results


# ======================================================================= records


def _parameters(spec: Any) -> list[dict[str, str]] | None:
    """Parameter definitions from ``{"x": "numeric"}``, ``[("x", "numeric")]``,
    ``["x:numeric"]`` or ``[{"name": "x", "type": "numeric"}]``."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return [{"name": str(k), "type": str(v)} for k, v in spec.items()]
    out = []
    for item in spec:
        if isinstance(item, Mapping):
            out.append({"name": str(item["name"]), "type": str(item["type"])})
        elif isinstance(item, str):
            name, sep, type_ = item.partition(":")
            if not sep or not name or not type_:
                raise ValueError(f"a parameter is NAME:TYPE, not {item!r}")
            out.append({"name": name.strip(), "type": type_.strip()})
        else:
            name, type_ = item
            out.append({"name": str(name), "type": str(type_)})
    return out


@dataclass
class ServiceInfo:
    """A published service version: the record ``GET /services/{name}/{version}`` answers
    (``raw`` keeps it whole, with the server's camelCase names)."""

    name: str
    version: str
    description: str | None = None
    operation_id: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    output_files: list[str] = field(default_factory=list)
    runtime_type: str = "R"
    timeout: float | None = None
    isolation: str | None = None
    is_default: bool = False
    owner: str | None = None
    creation_time: str | None = None
    snapshot_id: str | None = None
    code: str | None = None
    init_code: str | None = None
    pool: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> ServiceInfo:
        def definitions(key: str) -> dict[str, str]:
            return {p["name"]: p.get("type", "") for p in record.get(key) or []}

        return cls(
            name=record["name"],
            version=record["version"],
            description=record.get("description"),
            operation_id=record.get("operationId"),
            inputs=definitions("inputParameterDefinitions"),
            outputs=definitions("outputParameterDefinitions"),
            output_files=list(record.get("outputFileNames") or []),
            runtime_type=record.get("runtimeType", "R"),
            timeout=record.get("timeout"),
            isolation=record.get("isolation"),
            is_default=bool(record.get("isDefault", False)),
            owner=record.get("owner"),
            creation_time=record.get("creationTime"),
            snapshot_id=record.get("snapshotId"),
            code=record.get("code"),
            init_code=record.get("initCode"),
            pool=record.get("pool"),
            raw=dict(record),
        )


@dataclass
class ServiceResult:
    """One call's answer: ``outputs`` converted by their declared types, the
    ``console`` output, ``files`` (name → bytes); ``raw`` is the JSON answer."""

    success: bool
    outputs: dict[str, Any]
    console: str
    files: dict[str, bytes]
    error_message: str | None = None
    index: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, answer: Mapping[str, Any], types: Mapping[str, str]) -> ServiceResult:
        outputs = answer.get("outputParameters") or {}
        if isinstance(outputs, list):  # [{"name", "value"}], as sessions' execute answers
            outputs = {p["name"]: p.get("value") for p in outputs}
        files = answer.get("outputFiles") or {}
        if isinstance(files, list):
            files = {f["name"]: f.get("content", f.get("value", "")) for f in files}
        return cls(
            success=bool(answer.get("success", False)),
            outputs={k: convert_output(v, types.get(k)) for k, v in outputs.items()},
            console=answer.get("consoleOutput") or "",
            files={k: base64.b64decode(v or "") for k, v in files.items()},
            error_message=answer.get("errorMessage"),
            index=answer.get("index"),
            raw=dict(answer),
        )

    def raise_for_error(self) -> ServiceResult:
        """Raise :class:`ServiceError` when the R code failed; else return self."""
        if not self.success:
            raise ServiceError(self.error_message or "service call failed", self.console, self)
        return self


# ==================================================================== conversions


def to_json_value(value: Any) -> Any:
    """A JSON-ready value: DataFrames as ``{column: [values]}``, Series and numpy arrays
    as lists, numpy scalars as numbers, dates as ISO 8601; NaN, NaT and None as null."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        text = value.isoformat()
        return text.replace("+00:00", "Z") if isinstance(value, dt.datetime) else text
    module = type(value).__module__.split(".")[0]
    if module == "pandas":
        return _pandas_json(value)
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            return to_json_value(value.tolist())
        if isinstance(value, np.datetime64):
            return None if np.isnat(value) else str(value)
        if isinstance(value, np.generic):
            return to_json_value(value.item())
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Iterable):
        return [to_json_value(v) for v in value]
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


def _pandas_json(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return {str(c): _pandas_json(value[c]) for c in value.columns}
    if isinstance(value, pd.Series | pd.Index):
        if isinstance(value.dtype, pd.CategoricalDtype):
            value = value.astype(object)
        return [None if _missing(v) else to_json_value(v) for v in value.tolist()]
    if isinstance(value, pd.Timestamp):
        return to_json_value(value.to_pydatetime())
    if value is pd.NaT or value is pd.NA:
        return None
    if hasattr(value, "item"):
        return to_json_value(value.item())
    return to_json_value(str(value))


def _missing(v: Any) -> bool:
    try:
        import pandas as pd

        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def convert_output(value: Any, type_: str | None) -> Any:
    """A service output as a Python value by its declared type (see the module doc)."""
    if type_ == "data.frame":
        return _data_frame(value)
    if type_ == "matrix" and isinstance(value, list):
        return _matrix(value)
    return value


def _data_frame(value: Any) -> Any:
    if isinstance(value, list):  # an array of row objects
        columns: dict[str, list[Any]] = {}
        for row in value:
            for key in row:
                columns.setdefault(key, [])
        for row in value:
            for key, column in columns.items():
                column.append(row.get(key))
        value = columns
    if not isinstance(value, Mapping):
        return value
    value = {k: (v if isinstance(v, list) else [v]) for k, v in value.items()}
    try:
        import pandas as pd
    except ImportError:
        return value
    return pd.DataFrame(value)


def _matrix(rows: list[Any]) -> Any:
    import numpy as np

    flat = [v for row in rows for v in (row if isinstance(row, list) else [row])]
    if flat and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in flat
    ):
        return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
    if flat and all(isinstance(v, bool) for v in flat):
        return np.array(rows, dtype=bool)
    return np.array(rows, dtype=object)


def _text(value: str | os.PathLike[str] | None) -> str | None:
    """Code given as a string, or as a path to a file holding it."""
    if value is None or isinstance(value, str):
        return value
    with open(value, encoding="utf-8") as f:
        return f.read()


def _model(model: bytes | os.PathLike[str] | None) -> str | None:
    if model is None:
        return None
    if not isinstance(model, bytes | bytearray | memoryview):
        with open(model, "rb") as f:
            model = f.read()
    return base64.b64encode(bytes(model)).decode("ascii")


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


# ======================================================================== client

_CHANGES = {
    "init_code": "initCode",
    "snapshot_id": "snapshotId",
    "operation_id": "operationId",
    "is_default": "isDefault",
    "output_files": "outputFileNames",
    "runtime_type": "runtimeType",
    "inputs": "inputParameterDefinitions",
    "outputs": "outputParameterDefinitions",
}


class WebClient:
    """A logged-in (or token-carrying) client of one web node. An expired access token
    is refreshed once with the refresh token when there is one. Use as a context manager
    or call :meth:`close`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        timeout: float | None = 300.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.refresh_token = refresh_token
        self.timeout = timeout
        self.http = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=min(timeout or 30, 30))
        )

    def __enter__(self) -> WebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"WebClient({self.url!r})"

    # ------------------------------------------------------------------ HTTP
    def login(self, username: str, password: str) -> WebClient:
        """Log in (``POST /login``) and keep the tokens; returns self."""
        reply = self.http.post("/login", json={"username": username, "password": password})
        tokens = self._check(reply).json()
        self.token = tokens["access_token"]
        self.refresh_token = tokens.get("refresh_token")
        return self

    def _refresh(self) -> bool:
        if not self.refresh_token:
            return False
        reply = self.http.post("/login/refreshToken", json={"refreshToken": self.refresh_token})
        if reply.status_code != 200:
            return False
        tokens = reply.json()
        self.token = tokens["access_token"]
        self.refresh_token = tokens.get("refresh_token", self.refresh_token)
        return True

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send one request with the bearer token; raise :class:`WebError` on 4xx/5xx."""
        content = None
        headers = {}
        if json_body is not None:
            content = json.dumps(to_json_value(json_body), allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        extra = {} if timeout is None else {"timeout": timeout}
        for attempt in range(2):
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            reply = self.http.request(
                method, path, content=content, params=params, headers=headers, **extra
            )
            if reply.status_code != 401 or attempt or not self._refresh():
                break
        return self._check(reply)

    @staticmethod
    def _check(reply: httpx.Response) -> httpx.Response:
        if reply.status_code < 400:
            return reply
        body: Any = None
        message = reply.text or reply.reason_phrase
        with contextlib.suppress(ValueError):
            body = reply.json()
        if isinstance(body, Mapping):
            found = body.get("message", body.get("detail", message))
            message = found if isinstance(found, str) else json.dumps(found)
        raise WebError(reply.status_code, message, body=body, headers=reply.headers)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.request(method, path, **kwargs)
        if not reply.content:
            return None
        try:
            return reply.json()
        except ValueError:
            return reply.text

    # ------------------------------------------------------------- services
    def publish_service(
        self,
        name: str,
        code: str | os.PathLike[str],
        *,
        version: str | None = None,
        init_code: str | os.PathLike[str] | None = None,
        snapshot_id: str | None = None,
        model: bytes | os.PathLike[str] | None = None,
        inputs: Any = None,
        outputs: Any = None,
        output_files: Sequence[str] | None = None,
        description: str | None = None,
        operation_id: str | None = None,
        timeout: float | None = None,
        isolation: str | None = None,
        is_default: bool = False,
    ) -> ServiceInfo:
        """Publish ``code`` as service ``name`` (``version`` None: the server makes one).

        ``model``: the bytes of R's ``saveRDS`` (or ``save``) output, or a path to such
        a file; the service's code finds it as ``model`` (``save``: its objects).
        ``inputs``/``outputs``: ``{"x": "numeric"}``, ``["x:numeric"]`` or the API's
        ``[{"name", "type"}]``; ``code`` and ``init_code`` may be paths to files.
        """
        body: dict[str, Any] = {
            "code": _text(code),
            "initCode": _text(init_code),
            "snapshotId": snapshot_id,
            "model": _model(model),
            "description": description,
            "operationId": operation_id,
            "inputParameterDefinitions": _parameters(inputs),
            "outputParameterDefinitions": _parameters(outputs),
            "outputFileNames": list(output_files) if output_files is not None else None,
            "runtimeType": "R",
            "timeout": timeout,
            "isolation": isolation,
            "isDefault": is_default,
        }
        body = {k: v for k, v in body.items() if v is not None}
        path = _path("services", name) if version is None else _path("services", name, version)
        return ServiceInfo.from_json(self._json("POST", path, json_body=body))

    def services(self, name: str | None = None) -> list[ServiceInfo]:
        """Every version of every service, or of service ``name``."""
        path = _path("services") if name is None else _path("services", name)
        return [ServiceInfo.from_json(r) for r in self._json("GET", path)]

    def service_info(self, name: str, version: str | None = None) -> ServiceInfo:
        """One version's record; ``version`` None: the version marked default."""
        if version is not None:
            return ServiceInfo.from_json(self._json("GET", _path("services", name, version)))
        versions = self.services(name)
        for info in versions:
            if info.is_default:
                return info
        if len(versions) == 1:
            return versions[0]
        raise WebError(404, f"service {name} has no default version")

    def service(self, name: str, version: str | None = None) -> Service:
        """A callable handle on a service (``version`` None: its default version)."""
        return Service(self, name, version)

    def update_service(self, name: str, version: str, **changes: Any) -> ServiceInfo:
        """``PATCH`` a version: ``description=``, ``code=``, ``init_code=``, ``timeout=``,
        ``isolation=``, ``is_default=``, ``inputs=``, ``outputs=``, ... (the API's
        camelCase names work too)."""
        body: dict[str, Any] = {}
        for key, value in changes.items():
            if key in ("inputs", "outputs"):
                value = _parameters(value)
            elif key in ("code", "init_code"):
                value = _text(value)
            elif key == "model":
                value = _model(value)
            body[_CHANGES.get(key, key)] = value
        answer = self._json("PATCH", _path("services", name, version), json_body=body)
        if isinstance(answer, Mapping) and "name" in answer and "version" in answer:
            return ServiceInfo.from_json(answer)
        return self.service_info(name, version)

    def delete_service(self, name: str, version: str) -> None:
        """Remove a version and its pools."""
        self.request("DELETE", _path("services", name, version))

    # ----------------------------------------------------------------- pools
    def set_pool(self, name: str, version: str, initial: int, maximum: int) -> Any:
        """Set the version's pool sizes (shells started ahead, and at most)."""
        body = {"initialPoolSize": initial, "maxPoolSize": maximum}
        return self._json("POST", _path("services", name, version, "pool"), json_body=body)

    def pool(self, name: str, version: str) -> list[dict[str, Any]]:
        """The version's pool on each compute node: ``node, status, idle, busy, max``."""
        return self._json("GET", _path("services", name, version, "pool"))

    def delete_pool(self, name: str, version: str) -> None:
        """Put the version's pool back to the default sizes."""
        self.request("DELETE", _path("services", name, version, "pool"))


def login(url: str, username: str, password: str, **options: Any) -> WebClient:
    """A :class:`WebClient` logged in to the web node at ``url``."""
    client = WebClient(url, **options)
    try:
        return client.login(username, password)
    except BaseException:
        client.close()
        raise


# ======================================================================= service


class Service:
    """A published service: call it with keyword inputs, or run a batch of records.

    With ``version`` None, single calls go to ``POST /api/{name}`` (the default version);
    batches and the swagger document need a version and use the default one's.
    """

    def __init__(self, client: WebClient, name: str, version: str | None = None) -> None:
        self.client = client
        self.name = name
        self.version = version
        self._info: ServiceInfo | None = None

    def __repr__(self) -> str:
        return f"Service({self.name!r}, {self.version!r})"

    @property
    def info(self) -> ServiceInfo:
        """The service's record (fetched once)."""
        if self._info is None:
            self._info = self.client.service_info(self.name, self.version)
        return self._info

    def refresh(self) -> ServiceInfo:
        """Fetch the record again (after an update)."""
        self._info = None
        return self.info

    def _version(self) -> str:
        return self.version if self.version is not None else self.info.version

    def _timeout(self) -> httpx.Timeout | None:
        limit = self.info.timeout
        if limit is None or self.client.timeout is None or self.client.timeout > limit + 30:
            return None
        return httpx.Timeout(limit + 30, connect=30)

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **kwargs: Any) -> ServiceResult:
        return self.call(inputs, **kwargs)

    def call(self, inputs: Mapping[str, Any] | None = None, /, **kwargs: Any) -> ServiceResult:
        """Call the service once; raises :class:`ServiceError` when the R code fails and
        :class:`WebError` for HTTP errors (400 for a bad input, 504 past the timeout)."""
        body = {**(inputs or {}), **kwargs}
        parts = ("api", self.name) if self.version is None else ("api", self.name, self.version)
        answer = self.client._json("POST", _path(*parts), json_body=body, timeout=self._timeout())
        return ServiceResult.from_json(answer, self.info.outputs).raise_for_error()

    # ---------------------------------------------------------------- batch
    def _batch_path(self, *more: str) -> str:
        return _path("api", self.name, self._version(), "batch", *more)

    def submit_batch(
        self, records: Iterable[Mapping[str, Any]] | Any, parallel_count: int | None = None
    ) -> str:
        """Start a batch; returns its id (``batchExecutionId``)."""
        records = _records(records)
        params = {} if parallel_count is None else {"parallelCount": parallel_count}
        answer = self.client._json("POST", self._batch_path(), json_body=records, params=params)
        return answer["batchExecutionId"]

    def batch_status(self, batch_id: str, partial: bool = False) -> dict[str, Any]:
        """The batch's ``state``, ``completedItemCount``, ``totalItemCount`` and results."""
        params = {"showPartialResult": "true"} if partial else None
        return self.client._json("GET", self._batch_path(batch_id), params=params)

    def batches(self) -> list[str]:
        """The ids of this version's batches."""
        return self.client._json("GET", self._batch_path())

    def cancel_batch(self, batch_id: str) -> None:
        self.client.request("DELETE", self._batch_path(batch_id))

    def batch_files(self, batch_id: str, index: int) -> list[str]:
        return self.client._json("GET", self._batch_path(batch_id, str(index), "files"))

    def batch_file(self, batch_id: str, index: int, file_name: str) -> bytes:
        return self.client.request(
            "GET", self._batch_path(batch_id, str(index), "files", file_name)
        ).content

    def batch_results(self, status: Mapping[str, Any]) -> list[ServiceResult | None]:
        """A status's results in index order (``None`` where an item has none)."""
        total = status.get("totalItemCount") or 0
        results: list[ServiceResult | None] = [None] * total
        for position, answer in enumerate(status.get("batchExecutionResults") or []):
            result = ServiceResult.from_json(answer, self.info.outputs)
            index = result.index if result.index is not None else position
            if index >= len(results):
                results.extend([None] * (index + 1 - len(results)))
            results[index] = result
        return results

    def wait_batch(
        self,
        batch_id: str,
        *,
        progress: bool | ProgressCallback = False,
        poll_interval: float = 0.25,
        wait_timeout: float | None = None,
        total: int | None = None,
        files: bool = True,
    ) -> list[ServiceResult]:
        """Poll until the batch is over; its results in index order, each with its
        output files (fetched, unless ``files`` is False). A batch cancelled, or over
        with items lacking a result, raises :class:`BatchError`; an interrupt (Ctrl-C)
        cancels the batch and propagates. ``failed`` (no item succeeded) still returns
        the results: every one has ``success`` False and its ``error_message``."""
        deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
        bar = _Progress(progress, total or 0, f"{self.name} batch")
        try:
            while True:
                status = self.batch_status(batch_id)
                state = status.get("state", "")
                bar.update(status.get("completedItemCount", 0), status.get("totalItemCount"), state)
                if state in TERMINAL_STATES:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch_id} still {state} after {wait_timeout} s")
                time.sleep(poll_interval)
        except KeyboardInterrupt:
            with contextlib.suppress(WebError, httpx.HTTPError):
                self.cancel_batch(batch_id)
            raise
        finally:
            bar.stop()
        results = self.batch_results(status)
        if any(r is None for r in results):
            results = self.batch_results(self.batch_status(batch_id, partial=True))
        if files:
            for result in results:
                if result is not None and result.index is not None:
                    for name in result.raw.get("outputFileNames") or []:
                        if name not in result.files:
                            result.files[name] = self.batch_file(batch_id, result.index, name)
        if state == "cancelled" or any(r is None for r in results):
            raise BatchError(batch_id, state, results)
        return results  # type: ignore[return-value]

    def batch(
        self,
        records: Iterable[Mapping[str, Any]] | Any,
        parallel_count: int | None = None,
        progress: bool | ProgressCallback = False,
        *,
        poll_interval: float = 0.25,
        wait_timeout: float | None = None,
        files: bool = True,
    ) -> list[ServiceResult]:
        """Run ``records`` (dicts of inputs, or a DataFrame: one record a row) as a
        batch and wait for it; returns one :class:`ServiceResult` per record, in order
        (a record whose R code failed has ``success`` False; nothing is raised for it).

        ``progress``: True for a rich progress bar on stderr, or a callable
        ``(completed, total, state)`` called at every poll.
        """
        records = _records(records)
        batch_id = self.submit_batch(records, parallel_count)
        return self.wait_batch(
            batch_id,
            progress=progress,
            poll_interval=poll_interval,
            wait_timeout=wait_timeout,
            total=len(records),
            files=files,
        )

    def swagger(self) -> dict[str, Any]:
        """The service's OpenAPI 3 document."""
        return self.client._json("GET", _path("api", self.name, self._version(), "swagger.json"))


def _records(records: Any) -> list[Any]:
    if type(records).__module__.split(".")[0] == "pandas" and hasattr(records, "to_dict"):
        columns = _pandas_json(records)
        count = len(records)
        return [{c: values[i] for c, values in columns.items()} for i in range(count)]
    return [to_json_value(r) for r in records]


class _Progress:
    """A rich progress bar, a callback, or nothing."""

    def __init__(self, progress: bool | ProgressCallback, total: int, label: str) -> None:
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[state]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task(label, total=total or None, state="queued")
            self.bar.start()

    def update(self, completed: int, total: int | None, state: str) -> None:
        if self.callback is not None:
            self.callback(completed, total or 0, state)
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, total=total or None, state=state)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
