"""``rexec remote``: use a web node from the shell (login, execute, put, get, snapshot).

The login (URL, tokens, current session) is kept in ``~/.config/rexec/remote.json``
(``REXEC_REMOTE_FILE`` overrides); an expired access token is refreshed on the fly.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(help="Work with a remote rexec web node.")
console = Console(stderr=True)


def _state_file() -> Path:
    default = Path.home() / ".config" / "rexec" / "remote.json"
    return Path(os.environ.get("REXEC_REMOTE_FILE", default))


def _load() -> dict[str, Any]:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        console.print("[red]not logged in:[/red] run `rexec remote login URL` first")
        raise typer.Exit(2) from None


def _save(state: dict[str, Any]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))


class Remote:
    """An authenticated web-node client that refreshes its token once on a 401."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        import httpx  # here, not at import: `rexec serve` never needs it

        self.http = httpx.Client(base_url=state["url"], timeout=None)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.state['access_token']}"}
            reply = self.http.request(method, path, headers=headers, **kwargs)
            if reply.status_code != 401 or attempt:
                break
            refreshed = self.http.post(
                "/login/refreshToken", json={"refreshToken": self.state["refresh_token"]}
            )
            if refreshed.status_code != 200:
                break
            self.state.update(refreshed.json())
            _save(self.state)
        if reply.status_code >= 400:
            try:
                message = reply.json().get("message", reply.text)
            except ValueError:
                message = reply.text
            console.print(f"[red]{reply.status_code}:[/red] {message}")
            raise typer.Exit(1)
        return reply

    def session(self, create: bool = True) -> str:
        sid = self.state.get("session")
        if (
            sid
            and self.http.get(
                f"/sessions/{sid}",
                headers={"Authorization": f"Bearer {self.state['access_token']}"},
            )
            .json()
            .get("state")
            == "active"
        ):
            return sid
        if not create:
            console.print("[red]no session[/red]")
            raise typer.Exit(1)
        sid = self.request("POST", "/sessions", json={"name": "rexec remote"}).json()["id"]
        self.state["session"] = sid
        _save(self.state)
        return sid


@app.command()
def login(
    url: Annotated[str, typer.Argument(help="Web node URL, e.g. http://127.0.0.1:12800")],
    username: Annotated[str, typer.Option("--username", "-u")] = "admin",
    password: Annotated[str | None, typer.Option(help="Prompted for when not given.")] = None,
) -> None:
    """Log in and remember the tokens."""
    if password is None:
        password = os.environ.get("REXEC_PASSWORD") or getpass.getpass("password: ")
    import httpx

    reply = httpx.post(
        f"{url.rstrip('/')}/login", json={"username": username, "password": password}
    )
    if reply.status_code != 200:
        console.print(f"[red]login failed ({reply.status_code})[/red]")
        raise typer.Exit(1)
    _save({"url": url.rstrip("/"), **reply.json()})
    console.print(f"logged in to {url} as {username}")


@app.command()
def execute(
    code: Annotated[str, typer.Argument(help="R code; '-' reads it from standard input.")],
    input_: Annotated[
        list[str], typer.Option("--input", "-i", help="NAME=JSON input parameter (repeatable).")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    output: Annotated[
        list[str], typer.Option("--output", "-o", help="Output parameter name (repeatable).")
    ] = [],  # noqa: B006
    json_out: Annotated[bool, typer.Option("--json", help="Print the whole result.")] = False,
) -> None:
    """Run R code in your remote session (created on first use); print its console."""
    remote = Remote(_load())
    if code == "-":
        code = sys.stdin.read()
    inputs = []
    for item in input_:
        name, sep, value = item.partition("=")
        if not sep:
            console.print(f"[red]--input expects NAME=JSON, not {item!r}[/red]")
            raise typer.Exit(2)
        try:
            inputs.append({"name": name, "value": json.loads(value)})
        except ValueError:
            inputs.append({"name": name, "value": value})
    sid = remote.session()
    result = remote.request(
        "POST",
        f"/sessions/{sid}/execute",
        json={"code": code, "inputParameters": inputs, "outputParameters": output},
    ).json()
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        sys.stdout.write(result["consoleOutput"])
        for p in result["outputParameters"]:
            print(f"{p['name']} = {json.dumps(p['value'])}")
        for w in result["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {w}")
    if not result["success"]:
        console.print(f"[red]{result['errorMessage']}[/red]")
        raise typer.Exit(1)


@app.command()
def put(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    name: Annotated[str | None, typer.Option(help="Name in the session directory.")] = None,
) -> None:
    """Upload a local file into the session's working directory."""
    remote = Remote(_load())
    sid = remote.session()
    remote.request("PUT", f"/sessions/{sid}/files/{name or path.name}", content=path.read_bytes())
    console.print(f"uploaded {name or path.name}")


@app.command()
def get(
    name: Annotated[str, typer.Argument(help="File in the session directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Download a file from the session's working directory."""
    remote = Remote(_load())
    sid = remote.session(create=False)
    data = remote.request("GET", f"/sessions/{sid}/files/{name}").content
    target = output or Path(Path(name).name)
    target.write_bytes(data)
    console.print(f"saved {target}")


@app.command()
def snapshot(
    name: Annotated[str, typer.Option(help="Snapshot name.")] = "",
) -> None:
    """Snapshot the session (workspace and files); prints the snapshot id."""
    remote = Remote(_load())
    sid = remote.session(create=False)
    print(remote.request("POST", f"/sessions/{sid}/snapshot", json={"name": name}).json()["id"])
