"""The web node's settings: web.toml, ``REXEC_WEB_*``, flags, the README table, and
``rexec web --config`` / ``rexec up --web-config`` used by real started nodes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import httpx
import pytest
import typer

from rexec.cli.web import _settings
from rexec.web.settings import (
    ComputeNode,
    ConfigError,
    WebSettings,
    load_web_settings,
    web_reference_table,
)
from tests.conftest import UTF8, free_port, launch_web

ROOT = Path(__file__).resolve().parents[2]
NO_ENV: dict[str, str] = {}


def toml(tmp_path: Path, text: str, name: str = "web.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the TOML file


def test_sections_dotted_keys_and_compute_tables(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        """
services.pool_max = 6

[server]
host = "0.0.0.0"
port = 18000
compute_connect_timeout = 2

[database]
url = "sqlite:///elsewhere.db"

[sessions]
idle_timeout = 90

[log]
level = "warning"

[[compute]]
host = "c0.internal"
port = 7000
user = "web"
password = "secret-0"
pool_max = 16
reserve = 3

[[compute]]
host = "c1.internal"
""",
    )
    s = load_web_settings(path, {}, NO_ENV)
    assert (s.host, s.port, s.database_url) == ("0.0.0.0", 18000, "sqlite:///elsewhere.db")
    assert s.service_pool_max == 6
    assert s.session_idle_timeout == 90.0 and isinstance(s.session_idle_timeout, float)
    assert s.connect_timeout == 2.0 and isinstance(s.connect_timeout, float)
    assert s.log_level == "warning"
    assert s.compute_nodes == (
        ComputeNode("c0.internal", 7000, user="web", password="secret-0", pool_max=16, reserve=3),
        ComputeNode("c1.internal"),
    )
    assert s.compute_nodes[0].capacity == 13
    # Everything the file does not name keeps its default.
    assert s.batch_workers == WebSettings().batch_workers
    assert s.service_pool_initial == WebSettings().service_pool_initial


def test_no_file_is_the_defaults() -> None:
    assert load_web_settings(None, {}, NO_ENV) == WebSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nhots = 'x'\n", "unknown setting 'server.hots' (did you mean 'server.host'?)"),
        ("colour = 1\n", "unknown setting 'colour'"),
        ("[services.pool]\nmax = 3\n", "unknown setting 'services.pool.max'"),
        ("[[compute]]\npasword = 'x'\n", "compute[0]: unknown setting 'pasword'"),
        ("[[compute]]\nport = 1\n[[compute]]\nzone = 'a'\n", "compute[1]: unknown setting 'zone'"),
        ("[server]\nport = '12800'\n", "server.port: expected an integer, got '12800'"),
        ("[server]\nport = true\n", "server.port: expected an integer, got True"),
        ("[server]\nport = 80.5\n", "server.port: expected an integer, got 80.5"),
        ("[server]\nport = 70000\n", "server.port: must be at most 65535"),
        ("[server]\nhost = ['a']\n", "server.host: expected a string, got ['a']"),
        ("[batch]\nlease = 'long'\n", "batch.lease: expected a number, got 'long'"),
        ("[batch]\nworkers = 0\n", "batch.workers: must be at least 1"),
        ("[log]\nlevel = 'loud'\n", "log.level: must be one of debug, info, warning, error"),
        ("[[compute]]\npool_max = 'big'\n", "compute[0].pool_max: expected an integer"),
        ("[[compute]]\nuser = 7\n", "compute[0].user: expected a string, got 7"),
        ("[[compute]]\nreserve = -1\n", "compute[0].reserve: must be at least 0"),
        ("[compute]\nhost = 'x'\n", "compute: expected an array of tables"),
        ("[nodes]\nregistration_token = 'short'\n", "registration_token: at least 16"),
        ("[nodes]\nregistration_token_file = 'none'\n", "registration_token_file '"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_keys_and_values_name_the_key_and_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_web_settings(path, {}, NO_ENV)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nothing.toml"))):
        load_web_settings(tmp_path / "nothing.toml", {}, NO_ENV)


# ---------------------------------------------------------------- password_file


def test_password_file_relative_to_the_toml_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "c0").write_text("s3cret with spaces \n")
    path = toml(tmp_path, '[[compute]]\nuser = "web"\npassword_file = "secrets/c0"\n')
    monkeypatch.chdir("/")  # relative to the file, not to the working directory
    (node,) = load_web_settings(path, {}, NO_ENV).compute_nodes
    assert node.password == "s3cret with spaces "
    assert node.password_file == str(tmp_path / "secrets" / "c0")
    assert "s3cret" not in repr(node)  # logs and tracebacks do not show it


def test_password_file_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "pw").write_text("x")
    cases = {
        '[[compute]]\npassword_file = "missing"\n': "compute[0]: password_file",
        '[[compute]]\npassword_file = "empty"\n': "is empty",
        '[[compute]]\npassword = "y"\npassword_file = "pw"\n': "password or password_file",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_web_settings(toml(tmp_path, text), {}, NO_ENV)


# ---------------------------------------------------------------- precedence


def test_precedence_defaults_file_env_overrides(tmp_path: Path, monkeypatch) -> None:
    path = toml(tmp_path, "[server]\nport = 1001\nhost = '10.0.0.1'\n[services]\nwait = 2.5\n")
    env = {"REXEC_WEB_PORT": "1002", "REXEC_WEB_SERVICE_WAIT": "7"}
    assert load_web_settings(path, {}, NO_ENV).port == 1001
    s = load_web_settings(path, {}, env)
    assert (s.port, s.host, s.service_wait) == (1002, "10.0.0.1", 7.0)
    s = load_web_settings(path, {"port": 1003, "host": None}, env)
    assert (s.port, s.host) == (1003, "10.0.0.1")  # None: a flag not given
    assert load_web_settings(path, {"services.wait": 9}, env).service_wait == 9.0
    # Without an explicit mapping the process environment is read.
    monkeypatch.setenv("REXEC_WEB_BATCH_WORKERS", "3")
    assert load_web_settings(path, {}).batch_workers == 3


def test_bad_environment_and_overrides_are_errors_naming_them() -> None:
    with pytest.raises(ConfigError, match="REXEC_WEB_PORT: expected an integer, got 'tcp://"):
        load_web_settings(None, {}, {"REXEC_WEB_PORT": "tcp://10.0.0.1:12800"})
    with pytest.raises(ConfigError, match="REXEC_WEB_LOG_LEVEL: must be one of"):
        load_web_settings(None, {}, {"REXEC_WEB_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_web_settings(None, {"prot": 1}, NO_ENV)
    with pytest.raises(ConfigError, match=r"server\.port: expected an integer"):
        load_web_settings(None, {"port": "80"}, NO_ENV)


def test_cli_flags_override_the_file(tmp_path: Path, monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("REXEC_WEB_")]:
        monkeypatch.delenv(name)
    (tmp_path / "pw").write_text("from-file\n")
    path = toml(
        tmp_path,
        "[server]\nport = 1001\n[sessions]\nidle_timeout = 60\n"
        "[[compute]]\nhost = 'a'\nuser = 'ua'\npassword = 'pa'\npool_max = 4\n"
        "[[compute]]\nhost = 'b'\nuser = 'ub'\npassword = 'pb'\npool_max = 5\n",
    )
    s = _settings(path)
    assert [(n.host, n.user, n.password, n.pool_max) for n in s.compute_nodes] == [
        ("a", "ua", "pa", 4),
        ("b", "ub", "pb", 5),
    ]
    s = _settings(
        path, port=1002, idle_timeout=5.0, pool_max=9, compute_password_file=path.parent / "pw"
    )
    assert (s.port, s.session_idle_timeout) == (1002, 5.0)
    assert [(n.host, n.user, n.password, n.pool_max) for n in s.compute_nodes] == [
        ("a", "ua", "from-file", 9),
        ("b", "ub", "from-file", 9),
    ]
    s = _settings(path, compute=["c:7", "d:8"], compute_user="u", compute_password="p")
    assert [(n.name, n.user, n.password, n.pool_max) for n in s.compute_nodes] == [
        ("c:7", "u", "p", 8),
        ("d:8", "u", "p", 8),
    ]
    for bad in [
        {"compute": ["nocolon"]},
        {"compute_password": "p", "compute_password_file": path},
        {"own_compute": ComputeNode(port=7)},  # rexec up: the file may not list nodes
    ]:
        with pytest.raises(typer.Exit):
            _settings(path, **bad)
    own = ComputeNode(port=7, user="rexec-web", password="generated")
    plain = toml(tmp_path, "[server]\nport = 1005\n", "plain.toml")
    s = _settings(plain, own_compute=own)
    assert (s.port, s.compute_nodes) == (1005, (own,))


# ---------------------------------------------------------------- the docs


def test_every_setting_is_declared_with_a_key_and_a_doc() -> None:
    for cls in (WebSettings, ComputeNode):
        keys = [f.metadata.get("key") for f in fields(cls)]
        assert all(keys), f"{cls.__name__}: a field without setting(): {keys}"
        assert len(set(keys)) == len(keys)
        for f in fields(cls):
            assert f.metadata.get("doc", "").strip(), f"{cls.__name__}.{f.name} has no doc"


def test_readme_table_matches_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- web-config:start -->\n(.*?)\n<!-- web-config:end -->", readme, re.S)
    assert table, "README.md has no web-config table"
    assert table.group(1) == web_reference_table()
    rows = re.findall(r"^\| `([^`]+)`(?: `([^`]+)`)? \|", table.group(1), re.M)
    web = [f.metadata["key"] for f in fields(WebSettings)]
    expected = [("[[compute]]" if key == "compute" else key, "") for key in web]
    at = expected.index(("[[compute]]", ""))
    expected[at + 1 : at + 1] = [("[[compute]]", f.metadata["key"]) for f in fields(ComputeNode)]
    assert rows == expected  # one row per setting, each node key under [[compute]]


def test_docs_example_web_toml_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "web.md").read_text()
    section = text[text.index("## Configuration (web.toml)") :]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example
    body = example.group(1)
    for n in (0, 1):  # the example's password files, made here
        (tmp_path / f"compute-{n}.password").write_text(f"pw-{n}\n")
        body = body.replace(
            f"/etc/rexec/compute-{n}.password", str(tmp_path / f"compute-{n}.password")
        )
    s = load_web_settings(toml(tmp_path, body), {}, NO_ENV)
    assert [(n.name, n.password, n.pool_max) for n in s.compute_nodes] == [
        ("compute-0.internal:6311", "pw-0", 16),
        ("compute-1.internal:6311", "pw-1", 8),
    ]


# ---------------------------------------------------------------- real nodes


def _login(url: str, password: str) -> httpx.Client:
    reply = httpx.post(f"{url}/login", json={"username": "admin", "password": password})
    assert reply.status_code == 200, reply.text
    token = reply.json()["access_token"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _clean_env(tmp_path: Path, admin: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_WEB_")}
    return {**env, **UTF8, "REXEC_ADMIN_PASSWORD": admin, "HOME": str(tmp_path)}


def test_rexec_web_config_is_what_the_started_node_uses(tmp_path: Path) -> None:
    web_port, compute_port = free_port(), free_port()  # nothing listens on compute_port
    (tmp_path / "pw").write_text("compute-secret\n")
    db = tmp_path / "from-toml.db"
    path = toml(
        tmp_path,
        f"""
[server]
port = {web_port}

[database]
url = "sqlite:///{db}"

[[compute]]
host = "127.0.0.1"
port = {compute_port}
user = "web"
password_file = "pw"
pool_max = 5
reserve = 2
""",
    )
    admin = "admin-password-1"
    command = [sys.executable, "-m", "rexec.cli", "web", "--config", str(path)]
    node = launch_web(
        [*command, "--log-level", "warning"],
        web_port,
        tmp_path / "web.log",
        _clean_env(tmp_path, admin),
        tmp_path,
    )
    url = f"http://127.0.0.1:{web_port}"  # the port only the file names
    try:
        assert httpx.get(f"{url}/docs").status_code == 200
        assert db.exists()  # the file's database
        with _login(url, admin) as client:
            status = client.get("/status")
            assert status.status_code == 200, status.text
            nodes = status.json()["computeNodes"]
        assert [n["name"] for n in nodes] == [f"127.0.0.1:{compute_port}"]
        assert (nodes[0]["pool"]["max"], nodes[0]["pool"]["size"]) == (5, 3)
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(30)


def test_rexec_web_refuses_a_bad_config(tmp_path: Path) -> None:

    path = toml(tmp_path, "[server]\nprot = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "rexec.cli", "web", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(tmp_path, "x"),
    )
    assert done.returncode == 2
    assert f"{path}: unknown setting 'server.prot'" in done.stderr


def test_rexec_up_web_config_with_its_own_compute_login(tmp_path: Path) -> None:
    """The web.toml's port and sizes are used; the compute node is `up`'s own, reached
    with the login `up` generates (the session below runs R through it)."""
    web_port, compute_port = free_port(), free_port()
    path = toml(tmp_path, f"[server]\nport = {web_port}\n[sessions]\nidle_timeout = 120\n")
    admin = "admin-password-2"
    node = launch_web(
        [
            *(sys.executable, "-m", "rexec.cli", "up", "--web-config", str(path)),
            *("--compute-port", str(compute_port), "--pool-max", "2", "--log-level", "warning"),
            *("--database-url", f"sqlite:///{tmp_path / 'web.db'}"),
        ],
        web_port,
        tmp_path / "up.log",
        _clean_env(tmp_path, admin),
        tmp_path,
    )
    url = f"http://127.0.0.1:{web_port}"
    try:
        with _login(url, admin) as client:
            nodes = client.get("/status").json()["computeNodes"]
            assert [n["name"] for n in nodes] == [f"127.0.0.1:{compute_port}"]
            assert nodes[0]["pool"]["max"] == 2
            session = client.post("/sessions", json={"name": "up"})
            assert session.status_code == 201, session.text
            sid = session.json()["id"]
            ran = client.post(f"/sessions/{sid}/execute", json={"code": "cat(6 * 7)"})
            assert ran.status_code == 200 and ran.json()["consoleOutput"] == "42", ran.text
            client.delete(f"/sessions/{sid}")
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(40)
    rejected = toml(tmp_path, "[[compute]]\nport = 1\n", "with-compute.toml")

    done = subprocess.run(
        [sys.executable, "-m", "rexec.cli", "up", "--web-config", str(rejected)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(tmp_path, admin),
    )
    assert done.returncode == 2 and "runs its own compute node" in done.stderr
