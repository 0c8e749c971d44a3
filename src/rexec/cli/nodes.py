"""``rexec nodes add|list|remove|drain|undrain``: the compute-node registry of a web
node (shared by every web node on its database), with an Owner's login."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Manage the compute nodes of a web node (Owner only).")
console = Console()

Url = Annotated[str, typer.Option("--url", envvar="REXEC_URL", help="The web node.")]
User = Annotated[str, typer.Option("--user", envvar="REXEC_USER", help="An Owner.")]
Password = Annotated[
    str | None, typer.Option("--password", envvar="REXEC_PASSWORD", help="Its password.")
]
DEFAULT_URL = "http://127.0.0.1:12800"


def _calls(url: str, user: str, password: str | None) -> Any:
    """A logged-in web client whose errors become messages and exit codes (as for
    ``rexec services``)."""
    from rexec.cli.services import _Calls

    return _Calls(url, user, password)


@app.command("add")
def add(
    address: Annotated[str, typer.Argument(help="HOST:PORT of the compute node.")],
    node_user: Annotated[
        str | None, typer.Option("--node-user", help="The web nodes' login on it.")
    ] = None,
    node_password: Annotated[
        str | None,
        typer.Option("--node-password", envvar="REXEC_NODE_PASSWORD", help="Its password."),
    ] = None,
    pool_max: Annotated[int, typer.Option(help="The node's pool.max.")] = 8,
    tls: Annotated[
        bool,
        typer.Option(help="Reach it over TLS (PORT: its tls.port) with [compute_tls]'s files."),
    ] = False,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
) -> None:
    """Register a compute node (its login is stored sealed)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        console.print(f"[red]expected HOST:PORT, not {address!r}[/red]")
        raise typer.Exit(2)
    body = {"host": host, "port": int(port), "user": node_user, "poolMax": pool_max, "tls": tls}
    if node_user is not None:
        body["password"] = (
            node_password
            if node_password is not None
            else os.environ.get("REXEC_NODE_PASSWORD", "")
        )
    with _calls(url, user, password) as web:
        added = web._json("POST", "/computenodes", json_body=body)
    console.print(f"compute node {added['id']} ({address}): {added['state']}")


@app.command("list")
def list_nodes(url: Url = DEFAULT_URL, user: User = "admin", password: Password = None) -> None:
    """Every compute node with its state and pools."""
    with _calls(url, user, password) as web:
        nodes = web._json("GET", "/computenodes")
    table = Table("id", "node", "state", "pool", "idle", "busy", "max", "source")
    for node in nodes:
        pools = node["pools"] or {"": {}}
        for name, stats in sorted(pools.items()):
            table.add_row(
                str(node["id"] if node["id"] is not None else "-"),
                node["name"],
                node["state"],
                name or "(default)",
                str(stats.get("idle", "")),
                str(stats.get("busy", "")),
                str(stats.get("max", "")),
                node["source"],
            )
    console.print(table)


@app.command("remove")
def remove(
    node_id: int, url: Url = DEFAULT_URL, user: User = "admin", password: Password = None
) -> None:
    """Forget a registered compute node."""
    with _calls(url, user, password) as web:
        console.print(web._json("DELETE", f"/computenodes/{node_id}")["message"])


@app.command("drain")
def drain(
    node_id: int,
    undo: Annotated[bool, typer.Option("--undo", help="Take work again.")] = False,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
) -> None:
    """No new work goes to the node; what runs there finishes (then stop it)."""
    path = f"/computenodes/{node_id}/{'undrain' if undo else 'drain'}"
    with _calls(url, user, password) as web:
        console.print(web._json("POST", path)["message"])
