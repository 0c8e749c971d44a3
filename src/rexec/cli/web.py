"""``rexec web`` (the web node) and ``rexec up`` (a compute node and a web node together)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (sqlite:///file.db or postgresql://...); "
        "default sqlite:///rexec-web.db or REXEC_WEB_DATABASE_URL.",
    ),
]


ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The web node's TOML file (web.toml; README 'Configuration'). Flags override it.",
    ),
]


def _settings(
    config_file: Path | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    database_url: str | None = None,
    compute: list[str] | None = None,
    pool_max: int | None = None,
    idle_timeout: float | None = None,
    compute_user: str | None = None,
    compute_password: str | None = None,
    compute_password_file: Path | None = None,
    log_level: str | None = None,
    own_compute=None,
):
    """The web node's settings: defaults < ``config_file`` < ``REXEC_WEB_*`` < flags.

    ``--compute`` replaces the file's ``[[compute]]`` nodes; ``--pool-max``,
    ``--compute-user`` and ``--compute-password(-file)`` set that field of every node.
    ``own_compute`` is the node ``rexec up`` runs: the file may not list any.
    """
    from dataclasses import replace

    from rexec.web.settings import ComputeNode, ConfigError, load_web_settings, read_web_toml

    try:
        if (
            own_compute is not None
            and config_file is not None
            and "compute_nodes" in read_web_toml(config_file)
        ):
            raise ConfigError(
                f"{config_file}: `rexec up` runs its own compute node: [[compute]] "
                "tables are for `rexec web`"
            )
        overrides = {
            "host": host,
            "port": port,
            "database_url": database_url or None,
            "session_idle_timeout": idle_timeout,
            "log_level": log_level,
        }
        settings = load_web_settings(config_file, overrides)
        if own_compute is not None:
            return replace(settings, compute_nodes=(own_compute,))
        nodes = list(settings.compute_nodes)
        if compute:
            nodes = []
            for spec in compute:
                node_host, _, node_port = spec.rpartition(":")
                if not node_host or not node_port.isdigit():
                    raise ConfigError(f"--compute expects HOST:PORT, not {spec!r}")
                nodes.append(ComputeNode(node_host, int(node_port)))
        if compute_password is not None and compute_password_file is not None:
            raise ConfigError("give --compute-password or --compute-password-file, not both")
        changes: dict[str, object] = {}
        if pool_max is not None:
            changes["pool_max"] = pool_max
        if compute_user is not None:
            changes["user"] = compute_user
        if compute_password is not None:
            changes.update(password=compute_password, password_file="")
        if compute_password_file is not None:
            changes.update(password=None, password_file=str(compute_password_file))
        nodes = [replace(node, **changes) for node in nodes]
        return replace(settings, compute_nodes=tuple(nodes))
    except ConfigError as error:
        Console(stderr=True).print(str(error), style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _run_web(settings, log_level: str) -> None:
    import uvicorn

    from rexec.web.app import WebNode, bootstrap_admin, create_app
    from rexec.web.settings import ConfigError

    try:
        node = WebNode.build(settings)
    except ConfigError as error:  # files it reads only now (the compute nodes' TLS)
        Console(stderr=True).print(str(error), style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    generated = bootstrap_admin(node, os.environ.get("REXEC_ADMIN_PASSWORD"))
    if generated is not None:
        console.print(
            f"created Owner [bold]admin[/bold] with password [bold]{generated}[/bold] "
            "(shown once; set REXEC_ADMIN_PASSWORD to choose it)"
        )
    console.print(f"rexec web node on http://{settings.host}:{settings.port} (docs at /docs)")
    uvicorn.run(create_app(node=node), host=settings.host, port=settings.port, log_level=log_level)


def web(
    config_file: ConfigFileOption = None,
    host: Annotated[str | None, typer.Option(help="server.host (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="server.port, HTTP (12800)")] = None,
    database_url: DatabaseOption = None,
    compute: Annotated[
        list[str] | None,
        typer.Option(
            help="Compute node HOST:PORT (repeatable); replaces the file's compute tables."
        ),
    ] = None,
    pool_max: Annotated[
        int | None, typer.Option(help="pool_max of every compute node (8).")
    ] = None,
    compute_user: Annotated[
        str | None, typer.Option(help="QAP login on every compute node.")
    ] = None,
    compute_password: Annotated[str | None, typer.Option(help="Its password.")] = None,
    compute_password_file: Annotated[
        Path | None, typer.Option(help="A file holding its password.")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="sessions.idle_timeout, seconds (3600).")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="log.level (info).")] = None,
) -> None:
    """Run the web node: the REST API in front of one or more compute nodes."""
    settings = _settings(
        config_file,
        host=host,
        port=port,
        database_url=database_url,
        compute=compute,
        pool_max=pool_max,
        idle_timeout=idle_timeout,
        compute_user=compute_user,
        compute_password=compute_password,
        compute_password_file=compute_password_file,
        log_level=log_level,
    )
    _run_web(settings, settings.log_level)


def up(
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="Compute node rexec.toml.")
    ] = None,
    web_config: Annotated[
        Path | None,
        typer.Option(
            help="Web node web.toml, without compute tables (the compute node is this one)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Web node address (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Web node HTTP port (12800).")] = None,
    compute_port: Annotated[int, typer.Option(help="Compute node QAP port.")] = 6311,
    pool_max: Annotated[int | None, typer.Option(help="pool.max of the compute node.")] = None,
    database_url: DatabaseOption = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Idle session timeout, seconds (3600).")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="Log level of both (info).")] = None,
) -> None:
    """Run a compute node (loopback) and a web node in front of it: a one-box install."""
    from rexec import config as configuration
    from rexec.web.settings import ComputeNode

    cfg = configuration.load(config_file, {"server.port": compute_port, "pool.max": pool_max})
    command = [sys.executable, "-m", "rexec.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(compute_port)]
    if log_level is not None:
        command += ["--log-level", log_level]
    if config_file is not None:
        command += ["--config", str(config_file)]
    if pool_max is not None:
        command += ["--pool-max", str(pool_max)]
    compute_user, compute_password, private = _compute_login(cfg)
    if private is not None:  # a users file of our own: the web node's login alone
        command += ["--users-file", str(private)]
    own = ComputeNode(
        "127.0.0.1",
        compute_port,
        user=compute_user,
        password=compute_password,
        pool_max=cfg["pool.max"],
    )
    # Checked before the compute node starts: a mistake in web.toml costs no R start-up.
    settings = _settings(
        web_config,
        host=host,
        port=port,
        database_url=database_url,
        idle_timeout=idle_timeout,
        log_level=log_level,
        own_compute=own,
    )
    # Same process group: whoever stops `rexec up` (Ctrl-C, a service manager's killpg)
    # stops the compute node with it.
    compute = subprocess.Popen(command)
    # A SIGTERM to this process alone: uvicorn shuts the web node down, then raises the
    # signal again once its own handlers are gone. By default that would end this
    # process at once, leaving the compute node running; as SystemExit (status 143, as
    # a process ended by SIGTERM) it runs the clean-up below first.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _wait_for_compute(compute, compute_port)
        _run_web(settings, settings.log_level)
    finally:
        if compute.poll() is None:
            compute.terminate()
            try:
                compute.wait(40)
            except subprocess.TimeoutExpired:
                compute.kill()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _compute_login(cfg) -> tuple[str | None, str | None, Path | None]:
    """The web node's login on the compute node ``rexec up`` starts (publishing a
    service defines pools there, which needs a verified login): with a users file of
    the configuration's, REXEC_COMPUTE_USER and REXEC_COMPUTE_PASSWORD name one of its
    users; without, a users file holding one generated user is made for this run, in a
    private directory (logins stay optional for other clients, as before)."""
    import secrets
    import tempfile

    if cfg["auth.users_file"]:
        user = os.environ.get("REXEC_COMPUTE_USER")
        if user is None:
            console.print(
                "[yellow]the compute node has a users file: set REXEC_COMPUTE_USER and "
                "REXEC_COMPUTE_PASSWORD to one of its users to publish services[/yellow]"
            )
        return user, os.environ.get("REXEC_COMPUTE_PASSWORD"), None
    from rexec.compute.supervisor.users import UsersFile

    directory = Path(tempfile.mkdtemp(prefix="rexec-up-"))
    import atexit
    import shutil

    atexit.register(shutil.rmtree, directory, True)
    password = secrets.token_urlsafe(24)
    users = directory / "users"
    UsersFile(users).add("rexec-web", password)
    return "rexec-web", password, users


def _wait_for_compute(process: subprocess.Popen[bytes], port: int, timeout: float = 120) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            console.print("[red]the compute node exited during start-up[/red]")
            raise typer.Exit(1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(4) == b"Rsrv":
                    return
        except OSError:
            time.sleep(0.2)
    console.print("[red]the compute node did not start in time[/red]")
    raise typer.Exit(1)
