"""``rexec web`` (the web node) and ``rexec up`` (a compute node and a web node together)."""

from __future__ import annotations

import os
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


def _settings(
    host: str,
    port: int,
    database_url: str | None,
    compute: list[str],
    pool_max: int,
    idle_timeout: float,
    compute_user: str | None,
    compute_password: str | None,
):
    from rexec.web.settings import ComputeNode, WebSettings

    nodes = []
    for spec in compute or ["127.0.0.1:6311"]:
        node_host, _, node_port = spec.rpartition(":")
        if not node_host or not node_port.isdigit():
            console.print(f"[red]--compute expects HOST:PORT, not {spec!r}[/red]")
            raise typer.Exit(2)
        nodes.append(
            ComputeNode(
                node_host,
                int(node_port),
                user=compute_user,
                password=compute_password,
                pool_max=pool_max,
            )
        )
    settings = WebSettings(host=host, port=port, session_idle_timeout=idle_timeout).with_env()
    changes: dict[str, object] = {"compute_nodes": tuple(nodes)}
    if database_url:
        changes["database_url"] = database_url
    from dataclasses import replace

    return replace(settings, **changes)


def _run_web(settings, log_level: str) -> None:
    import uvicorn

    from rexec.web.app import WebNode, bootstrap_admin, create_app

    node = WebNode.build(settings)
    generated = bootstrap_admin(node, os.environ.get("REXEC_ADMIN_PASSWORD"))
    if generated is not None:
        console.print(
            f"created Owner [bold]admin[/bold] with password [bold]{generated}[/bold] "
            "(shown once; set REXEC_ADMIN_PASSWORD to choose it)"
        )
    console.print(f"rexec web node on http://{settings.host}:{settings.port} (docs at /docs)")
    uvicorn.run(create_app(node=node), host=settings.host, port=settings.port, log_level=log_level)


def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 12800,
    database_url: DatabaseOption = None,
    compute: Annotated[list[str], typer.Option(help="Compute node HOST:PORT (repeatable).")] = [],  # noqa: B006 - typer reads the default, never mutates it
    pool_max: Annotated[int, typer.Option(help="pool.max of the compute nodes.")] = 8,
    compute_user: Annotated[str | None, typer.Option(help="QAP login for compute nodes.")] = None,
    compute_password: Annotated[str | None, typer.Option(help="Its password.")] = None,
    idle_timeout: Annotated[float, typer.Option(help="Idle session timeout, seconds.")] = 3600.0,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the web node: the REST API in front of one or more compute nodes."""
    settings = _settings(
        host, port, database_url, compute, pool_max, idle_timeout, compute_user, compute_password
    )
    _run_web(settings, log_level)


def up(
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="Compute node rexec.toml.")
    ] = None,
    host: Annotated[str, typer.Option(help="Web node address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Web node HTTP port.")] = 12800,
    compute_port: Annotated[int, typer.Option(help="Compute node QAP port.")] = 6311,
    pool_max: Annotated[int | None, typer.Option(help="pool.max of the compute node.")] = None,
    database_url: DatabaseOption = None,
    idle_timeout: Annotated[float, typer.Option(help="Idle session timeout, seconds.")] = 3600.0,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run a compute node (loopback) and a web node in front of it: a one-box install."""
    from rexec import config as configuration

    cfg = configuration.load(config_file, {"server.port": compute_port, "pool.max": pool_max})
    command = [sys.executable, "-m", "rexec.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(compute_port), "--log-level", log_level]
    if config_file is not None:
        command += ["--config", str(config_file)]
    if pool_max is not None:
        command += ["--pool-max", str(pool_max)]
    compute_user, compute_password, private = _compute_login(cfg)
    if private is not None:  # a users file of our own: the web node's login alone
        command += ["--users-file", str(private)]
    # Same process group: whoever stops `rexec up` (Ctrl-C, a service manager's killpg)
    # stops the compute node with it.
    compute = subprocess.Popen(command)
    try:
        _wait_for_compute(compute, compute_port)
        settings = _settings(
            host,
            port,
            database_url,
            [f"127.0.0.1:{compute_port}"],
            cfg["pool.max"],
            idle_timeout,
            compute_user,
            compute_password,
        )
        _run_web(settings, log_level)
    finally:
        if compute.poll() is None:
            compute.terminate()
            try:
                compute.wait(40)
            except subprocess.TimeoutExpired:
                compute.kill()


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
