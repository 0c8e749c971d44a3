"""``rexec``: the command line. Flags map one-to-one onto settings in :mod:`rexec.config`."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rexec import config as configuration

app = typer.Typer(help="rexec: an R execution platform speaking Rserve's QAP1 protocol.")
users_app = typer.Typer(help="Manage the users file of a compute node.")
app.add_typer(users_app, name="users")
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file (rexec.toml).")
]


def _load(config_file: Path | None, **overrides: object) -> configuration.Config:
    try:
        return configuration.load(config_file, overrides)
    except (configuration.ConfigError, OSError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    config_file: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="server.host")] = None,
    port: Annotated[int | None, typer.Option(help="server.port")] = None,
    pool_initial: Annotated[int | None, typer.Option(help="pool.initial")] = None,
    pool_max: Annotated[int | None, typer.Option(help="pool.max")] = None,
    pool_mode: Annotated[str | None, typer.Option(help="pool.mode: fork or spawn")] = None,
    log_level: Annotated[str | None, typer.Option(help="log.level")] = None,
    users_file: Annotated[Path | None, typer.Option(help="auth.users_file")] = None,
    allow_root: Annotated[
        bool, typer.Option("--allow-root", help="Let R shells run as root (shell.allow_root).")
    ] = False,
    rserve_conf: Annotated[
        list[Path] | None,
        typer.Option(help="Rserve configuration file(s) (Rserv.conf), read as Rserve does."),
    ] = None,
) -> None:
    """Run a compute node: an Rserve-compatible QAP1 server on a pool of R shells."""
    from rexec.compute import rserve_conf as rserve
    from rexec.compute.supervisor.server import serve as run

    def from_rserve() -> dict[str, object]:
        """The Rserve files, read in order into one state as Rserve reads them; on
        SIGHUP they are read again with the rest of the configuration."""
        if not rserve_conf:
            return {}
        settings, warnings = rserve.load_all(rserve_conf)
        for warning in warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
        return settings

    flags = {
        "server.host": host,
        "server.port": port,
        "pool.initial": pool_initial,
        "pool.max": pool_max,
        "pool.mode": pool_mode,
        "log.level": log_level,
        "auth.users_file": str(users_file) if users_file else None,
        "shell.allow_root": True if allow_root else None,
    }
    given = {key: v for key, v in flags.items() if v is not None}
    try:
        rserve_settings = from_rserve()
    except OSError as exc:
        console.print(f"[red]cannot read the Rserve configuration:[/red] {exc}")
        raise typer.Exit(2) from exc
    cfg = _load(config_file, **{**rserve_settings, **given})

    def reload() -> configuration.Config:
        return configuration.load(config_file, {**from_rserve(), **given})

    run(cfg, reload)


def _users_file(config_file: Path | None, users_file: Path | None) -> Path:
    if users_file is not None:
        return users_file
    path = _load(config_file)["auth.users_file"]
    if not path:
        console.print("[red]no users file:[/red] pass --file or set auth.users_file")
        raise typer.Exit(2)
    return Path(path)


UsersFileOption = Annotated[Path | None, typer.Option("--file", help="The users file.")]


@users_app.command("add")
def users_add(
    name: str,
    password: Annotated[
        str | None, typer.Option(help="Password (prompted for when not given).")
    ] = None,
    config_file: ConfigOption = None,
    users_file: UsersFileOption = None,
) -> None:
    """Add a user, or change the password of an existing one."""
    from rexec.compute.supervisor.users import UsersFile

    if password is None:
        password = getpass.getpass(f"password for {name}: ")
    try:
        UsersFile(_users_file(config_file, users_file)).add(name, password)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"user [bold]{name}[/bold] saved")


@users_app.command("remove")
def users_remove(
    name: str, config_file: ConfigOption = None, users_file: UsersFileOption = None
) -> None:
    """Remove a user."""
    from rexec.compute.supervisor.users import UsersFile

    if not UsersFile(_users_file(config_file, users_file)).remove(name):
        console.print(f"[red]no user {name}[/red]")
        raise typer.Exit(1)
    console.print(f"user [bold]{name}[/bold] removed")


@users_app.command("list")
def users_list(config_file: ConfigOption = None, users_file: UsersFileOption = None) -> None:
    """List the users."""
    from rexec.compute.supervisor.users import UsersFile

    table = Table("user")
    for name in UsersFile(_users_file(config_file, users_file)).names():
        table.add_row(name)
    console.print(table)


@app.command()
def status(
    config_file: ConfigOption = None,
    port: Annotated[int | None, typer.Option(help="server.port of the node to ask")] = None,
) -> None:
    """Print the pools of a running compute node on this machine (the default and named ones)."""
    from rexec.compute.supervisor.status import query

    cfg = _load(config_file, **{"server.port": port})
    try:
        answer = query(cfg, {"op": "status"})
    except OSError as exc:
        console.print(f"[red]no compute node answers on port {cfg['server.port']}:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table(title=f"rexec pools ({answer['mode']} mode), port {cfg['server.port']}")
    table.add_column("pool", no_wrap=True)
    columns = ("idle", "busy", "starting", "waiting", "max", "served", "recycled", "failed")
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for name, pool in [("default", answer["pool"]), *answer.get("pools", {}).items()]:
        table.add_row(name, *(str(pool[c]) for c in columns))
    console.print(table)


@app.command("config")
def show_config() -> None:
    """Print the configuration reference (every key, its default and meaning)."""
    print(configuration.reference_table())


from rexec.cli import capacity as _capacity  # noqa: E402
from rexec.cli import nodes as _nodes  # noqa: E402 - sub-apps registered last
from rexec.cli import register as _register  # noqa: E402
from rexec.cli import remote as _remote  # noqa: E402
from rexec.cli import services as _services  # noqa: E402
from rexec.cli import web as _web  # noqa: E402

app.command("web")(_web.web)
app.command("up")(_web.up)
app.command("capacity")(_capacity.capacity)
app.command("register")(_register.register)
app.add_typer(_remote.app, name="remote")
app.add_typer(_services.app, name="services")
app.add_typer(_nodes.app, name="nodes")
