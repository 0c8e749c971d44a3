"""``rexec register``: keep a compute node registered with the web tier from a process
of its own (a Kubernetes sidecar container: R code in the node's container never sees
the registration token or the login), draining it on SIGTERM. See
:mod:`rexec.compute.supervisor.register`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from rexec import config as configuration

console = Console(stderr=True)


def register(
    config_file: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The node's rexec.toml (server.port, metrics.*)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="register.url: the web node URL(s).")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="register.token_file: the registration token.")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="register.host: the name web nodes reach the node at.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="server.port of the node.")] = None,
    user: Annotated[
        str | None, typer.Option(help="register.user: the web nodes' QAP login there.")
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="register.password_file: its password.")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="register.interval: seconds between registrations.")
    ] = None,
    ready_url: Annotated[
        str | None,
        typer.Option(help="The node's /readyz (default: its metrics.host and metrics.port)."),
    ] = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Drain the node in the registry once and exit.")
    ] = False,
    log_level: Annotated[str | None, typer.Option(help="log.level")] = None,
) -> None:
    """Register a compute node with the web tier and keep it registered until SIGTERM,
    which drains it there (the node itself runs beside: `rexec serve`)."""
    from rexec.compute.supervisor.register import RegistrationError, run_beside

    overrides = {
        "register.url": url,
        "register.token_file": str(token_file) if token_file else None,
        "register.host": host,
        "server.port": port,
        "register.user": user,
        "register.password_file": str(password_file) if password_file else None,
        "register.interval": interval,
        "log.level": log_level,
    }
    try:
        cfg = configuration.load(config_file, overrides)
    except (configuration.ConfigError, OSError) as exc:
        console.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=cfg["log.level"].upper(),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    try:
        code = asyncio.run(run_beside(cfg, ready_url, drain=drain))
    except RegistrationError as exc:
        console.print(f"[red]cannot register:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)
