"""``rexec services``: publish, list, call and manage published services (docs/services.md).

Every command logs in to the web node with ``--url``, ``--user`` and ``--password``
(or ``REXEC_URL``, ``REXEC_USER``, ``REXEC_PASSWORD``; the password is prompted for
when none is given). Results go to standard output as JSON; messages, the R console
and progress bars to standard error.
"""

from __future__ import annotations

import csv
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rexec.client.web import Service, WebClient

app = typer.Typer(help="Publish and consume R code as web services on a web node.")
console = Console(stderr=True)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="REXEC_URL", help="Web node URL (env REXEC_URL).")
]
UserOption = Annotated[
    str, typer.Option("--user", "-u", envvar="REXEC_USER", help="User name (env REXEC_USER).")
]
PasswordOption = Annotated[
    str | None,
    typer.Option(
        envvar="REXEC_PASSWORD",
        show_envvar=True,
        help="Password (env REXEC_PASSWORD; prompted for when not given).",
    ),
]
DEFAULT_URL = "http://127.0.0.1:12800"


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]{escape(message)}[/red]", soft_wrap=True)
    return typer.Exit(code)


def _client(url: str, user: str, password: str | None) -> WebClient:
    import httpx

    from rexec.client.web import WebError, login

    if password is None:
        password = getpass.getpass(f"password for {user} at {url}: ")
    try:
        return login(url, user, password)
    except WebError as exc:
        raise _fail(f"login to {url} failed: {exc}") from None
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach {url}: {exc}") from None


class _Calls:
    """Runs a command's requests, turning client errors into messages and exit codes."""

    def __init__(self, url: str, user: str, password: str | None) -> None:
        self.web = _client(url, user, password)

    def __enter__(self) -> WebClient:
        return self.web

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        import httpx

        from rexec.client.web import BatchError, ServiceError, WebError

        self.web.close()
        if isinstance(exc, WebError):
            raise _fail(str(exc))
        if isinstance(exc, ServiceError):
            if exc.console:
                sys.stderr.write(exc.console)
            raise _fail(f"R error: {exc.message}")
        if isinstance(exc, BatchError):
            raise _fail(str(exc))
        if isinstance(exc, httpx.HTTPError):
            raise _fail(f"request failed: {exc}")
        return False


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _parameters(specs: list[str], option: str) -> list[dict[str, str]]:
    out = []
    for spec in specs:
        name, sep, type_ = spec.partition(":")
        if not sep or not name.strip() or not type_.strip():
            raise _fail(f"{option} expects NAME:TYPE, not {spec!r}", 2)
        out.append({"name": name.strip(), "type": type_.strip()})
    return out


def _read(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc}", 2) from None


@app.command()
def publish(
    name: Annotated[str, typer.Argument(help="Service name.")],
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version (default: a new GUID).")
    ] = None,
    code_file: Annotated[
        Path | None, typer.Option("--code", help="File with the R code ('-': standard input).")
    ] = None,
    code_text: Annotated[str | None, typer.Option("-c", "--code-text", help="R code.")] = None,
    init: Annotated[
        Path | None, typer.Option("--init", help="File with init code (run once per pool).")
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="Input NAME:TYPE (repeatable), e.g. x:numeric."),
    ] = None,
    output: Annotated[
        list[str] | None,
        typer.Option("--output", "-o", help="Output NAME:TYPE (repeatable)."),
    ] = None,
    output_file: Annotated[
        list[str] | None,
        typer.Option("--output-file", help="File the code writes, returned (repeatable)."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="Description.")] = None,
    operation_id: Annotated[str | None, typer.Option(help="operationId in swagger.")] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A saveRDS (or save) file; the code finds it as `model`.",
        ),
    ] = None,
    snapshot: Annotated[
        str | None, typer.Option(help="Snapshot id whose workspace and files are copied in.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per call (default 60).")] = None,
    isolation: Annotated[str | None, typer.Option(help="'shell' (default) or 'process'.")] = None,
    default: Annotated[
        bool, typer.Option("--default", help="Make this the service's default version.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """Publish R code as a service version; prints the version."""
    if (code_file is None) == (code_text is None):
        raise _fail("give the R code with exactly one of --code FILE and -c CODE", 2)
    code = code_text if code_text is not None else _read(code_file)  # type: ignore[arg-type]
    with _Calls(url, user, password) as web:
        info = web.publish_service(
            name,
            code,
            version=version,
            init_code=_read(init) if init is not None else None,
            snapshot_id=snapshot,
            model=model,
            inputs=_parameters(input_ or [], "--input"),
            outputs=_parameters(output or [], "--output"),
            output_files=output_file or [],
            description=description,
            operation_id=operation_id,
            timeout=timeout,
            isolation=isolation,
            is_default=default,
        )
    console.print(f"published [bold]{escape(info.name)}[/bold] version {escape(info.version)}")
    print(info.version)


def _signature(definitions: dict[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in definitions.items())


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Only this service's versions.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """List the services (every version)."""
    with _Calls(url, user, password) as web:
        services = web.services(name)
    if json_out:
        _print_json([s.raw for s in services])
        return
    table = Table("name", "version", "default", "inputs", "outputs", "owner", "description")
    for s in sorted(services, key=lambda s: (s.name, s.creation_time or "")):
        table.add_row(
            escape(s.name),
            escape(s.version),
            "yes" if s.is_default else "",
            escape(_signature(s.inputs)),
            escape(_signature(s.outputs)),
            escape(s.owner or ""),
            escape(s.description or ""),
        )
    Console().print(table)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Service name.")],
    version: Annotated[
        str | None, typer.Argument(help="Version (default: the default version).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """Print a service version's record as JSON."""
    with _Calls(url, user, password) as web:
        info = web.service_info(name, version)
    _print_json(info.raw)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _call_inputs(
    inputs: list[str], json_text: str | None, json_file: Path | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for source in (json_text, _read(json_file) if json_file is not None else None):
        if source is None:
            continue
        try:
            loaded = json.loads(source)
        except ValueError as exc:
            raise _fail(f"the inputs are not JSON: {exc}", 2) from None
        if not isinstance(loaded, dict):
            raise _fail("the JSON inputs must be an object {name: value}", 2)
        body.update(loaded)
    for item in inputs:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise _fail(f"--input expects NAME=VALUE, not {item!r}", 2)
        body[key] = _value(text)
    return body


@app.command()
def call(
    name: Annotated[str, typer.Argument(help="Service name.")],
    version: Annotated[
        str | None, typer.Argument(help="Version (default: the default version).")
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="NAME=VALUE (repeatable); VALUE is JSON, else a string."
        ),
    ] = None,
    json_text: Annotated[
        str | None, typer.Option("--json", help="The inputs as a JSON object.")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json-file", help="File with the inputs as a JSON object.")
    ] = None,
    files_dir: Annotated[
        Path | None, typer.Option("--files-dir", help="Save the output files in this directory.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """Call a service once; prints its outputs as JSON (the R console goes to stderr)."""
    body = _call_inputs(input_ or [], json_text, json_file)
    with _Calls(url, user, password) as web:
        result = web.service(name, version).call(body)
    if result.console:
        sys.stderr.write(result.console)
    if files_dir is not None:
        files_dir.mkdir(parents=True, exist_ok=True)
        for file_name, data in result.files.items():
            (files_dir / Path(file_name).name).write_bytes(data)
            console.print(f"saved {escape(str(files_dir / Path(file_name).name))}")
    _print_json(result.raw.get("outputParameters") or {})


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Service name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """Delete a service version (and its pools)."""
    with _Calls(url, user, password) as web:
        web.delete_service(name, version)
    console.print(f"deleted [bold]{escape(name)}[/bold] version {escape(version)}")


@app.command()
def pool(
    name: Annotated[str, typer.Argument(help="Service name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    initial: Annotated[int | None, typer.Option(help="Shells started ahead.")] = None,
    maximum: Annotated[int | None, typer.Option("--max", help="Shells at most.")] = None,
    delete_: Annotated[bool, typer.Option("--delete", help="Back to the default sizes.")] = False,
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """Show a version's pool on each compute node, set its sizes, or reset them."""
    if delete_ and (initial is not None or maximum is not None):
        raise _fail("--delete cannot go with --initial or --max", 2)
    with _Calls(url, user, password) as web:
        if delete_:
            web.delete_pool(name, version)
            console.print("pool back to the default sizes")
        elif initial is not None or maximum is not None:
            if initial is None or maximum is None:
                sizes = web.service_info(name, version).pool or {}
                initial = sizes.get("initialPoolSize", 1) if initial is None else initial
                maximum = sizes.get("maxPoolSize", 4) if maximum is None else maximum
            web.set_pool(name, version, initial, maximum)
            console.print(f"pool set: initial {initial}, max {maximum}")
        nodes = web.pool(name, version)
    table = Table(title=f"pool of {escape(name)} {escape(version)}")
    columns = ("node", "status", "idle", "busy", "max")
    for column in columns:
        table.add_column(column, justify="left" if column in ("node", "status") else "right")
    for node in nodes:
        table.add_row(*(escape(str(node.get(c, ""))) for c in columns))
    Console().print(table)


def _cell(text: str, type_: str | None) -> Any:
    """A CSV cell as the JSON value of the input's declared type ('' and NA are null)."""
    if text.strip() in ("", "NA"):
        return None
    try:
        if type_ == "numeric":
            return float(text)
        if type_ == "integer":
            return int(text)
        if type_ == "logical":
            return {"true": True, "t": True, "1": True}.get(text.strip().lower(), False)
        if type_ == "character":
            return text
    except ValueError:
        raise _fail(f"cannot read {text!r} as {type_}", 2) from None
    return _value(text)


def _batch_records(path: Path, service: Service) -> list[dict[str, Any]]:
    text = _read(path)
    if path.suffix.lower() == ".csv":
        types = service.info.inputs
        rows = csv.DictReader(text.splitlines())
        return [{k: _cell(v or "", types.get(k)) for k, v in row.items()} for row in rows]
    try:
        records = json.loads(text)
    except ValueError as exc:
        raise _fail(f"{path} is not JSON: {exc}", 2) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _fail(f"{path} must hold a JSON array of input objects", 2)
    return records


@app.command()
def batch(
    name: Annotated[str, typer.Argument(help="Service name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="Records: a JSON array of input objects, or a CSV."),
    ],
    parallel: Annotated[
        int | None, typer.Option("--parallel", "-p", help="Records run at once.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the results here (default stdout).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """Run a file of records as a batch; writes the results (JSON, in record order; a
    record left without a result by a cancelled batch is null). Exits 1 when any record
    failed or the batch did not complete."""
    from rexec.client.web import BatchError

    state = "complete"
    with _Calls(url, user, password) as web:
        service = web.service(name, version)
        records = _batch_records(file, service)
        try:
            results = service.batch(records, parallel_count=parallel, progress=progress)
        except BatchError as exc:
            state, results = exc.state, exc.results  # type: ignore[assignment]
    answers = [None if r is None else r.raw for r in results]
    text = json.dumps(answers, indent=2, ensure_ascii=False)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    failed = [i for i, r in enumerate(results) if r is None or not r.success]
    console.print(f"{len(results)} records, {len(results) - len(failed)} succeeded")
    if state != "complete":
        raise _fail(f"the batch was {state}")
    if failed:
        raise _fail(f"failed records: {', '.join(map(str, failed))}")
