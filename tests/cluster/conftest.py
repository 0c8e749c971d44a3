"""A cluster of real hosts on this one machine: Linux network namespaces on a bridge.

The ``cluster`` fixture (one per module) builds, in the root namespace, a bridge with a
private /24 that nothing else on the machine uses (the first free one of
10.231.0.0/24 ... 10.231.15.0/24, so two runs never share one), and one network
namespace per host, each joined to the bridge by a veth pair and given its own address:

    root namespace   .1    PostgreSQL (listen_addresses = .1, trust for the subnet only),
                           and the test process, which talks to the web nodes over the bridge
    c0, c1, c2       .11-.13  ``rexec serve`` (server.remote: authentication on, a users
                              file holding the web nodes' login), port 6311
    w0, w1           .21-.22  ``rexec web --config web.toml``, port 12800, one shared
                              PostgreSQL database, the compute nodes as ``[[compute]]``
                              tables (or c1 and c2 registered through POST /computenodes)

Every process runs as ``ip netns exec <ns> ...`` in a session of its own. Everything the
fixture made (processes, namespaces, veth pairs, the bridge, PostgreSQL and its files)
is removed at teardown, also when a test failed; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from rexec.compute.supervisor.users import UsersFile
from tests.conftest import UTF8

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ADMIN_PASSWORD = "cluster-admin-1"
COMPUTE_USER, COMPUTE_PASSWORD = "webnode", "cluster-compute-secret-1"
NODE_SECRET = "cluster-node-secret-1"
COMPUTE_PORT, WEB_PORT, PG_PORT = 6311, 12800, 5432
COMPUTE_HOSTS, WEB_HOSTS = ("c0", "c1", "c2"), ("w0", "w1")
#: Host number in the subnet of each host (the root namespace is .1).
HOST_NUMBER = {"c0": 11, "c1": 12, "c2": 13, "w0": 21, "w1": 22}
#: Seconds between the web nodes' checks of every compute node, and their connect timeout.
CHECK_INTERVAL, CONNECT_TIMEOUT = 0.5, 2.0


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def wait_until(what: str, predicate, timeout: float, interval: float = 0.2):
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = predicate()
        except (httpx.TransportError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")
        time.sleep(interval)


def _taken(prefix: str) -> bool:
    """Whether any address or route of this machine is in ``prefix``.0/24."""
    text = (
        run("ip", "-4", "-o", "addr").stdout
        + run("ip", "-4", "route", "show", "table", "all").stdout
    )
    return f" {prefix}." in text or f"\t{prefix}." in text


@dataclass
class Host:
    name: str
    netns: str
    address: str
    #: The veth end in the root namespace (a port of the bridge): down = partitioned.
    link: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """Every process in the host's namespace (its R shells too)."""
        listed = run("ip", "netns", "pids", self.netns, check=False).stdout.split()
        return [int(p) for p in listed if p.isdigit()]

    def kill(self) -> None:
        """The host dies: SIGKILL every process in its namespace, its process group first."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        for _ in range(20):  # forks in flight may add a process or two: a few rounds
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        assert not self.pids(), f"{self.name}: processes left after SIGKILL: {self.pids()}"

    def stop(self, grace: float = 10) -> None:
        """SIGTERM its process group, then whatever is left is killed."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        self.kill()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def partition(self) -> None:
        run("ip", "link", "set", self.link, "down")

    def heal(self) -> None:
        run("ip", "link", "set", self.link, "up")

    def launch(self, command: list[str], env: dict[str, str]) -> None:
        assert not self.alive, f"{self.name} is running"
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n=== start {self.starts}: {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *command],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.directory,
                start_new_session=True,
            )


@dataclass
class Network:
    """The bridge, the namespaces and their veth pairs (``build`` and ``remove``)."""

    directory: Path
    index: int = -1
    hosts: dict[str, Host] = field(default_factory=dict)
    made_netns: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"10.231.{self.index}"

    @property
    def bridge(self) -> str:
        return f"rxc{self.index}-br"

    @property
    def gateway(self) -> str:
        return f"{self.prefix}.1"

    @property
    def subnet(self) -> str:
        return f"{self.prefix}.0/24"

    def build(self) -> None:
        for index in range(16):
            self.index = index
            if _taken(self.prefix):
                continue
            made = run("ip", "link", "add", self.bridge, "type", "bridge", check=False)
            if made.returncode == 0:  # the bridge's name is the lock between two runs
                break
        else:
            pytest.skip("no free subnet among 10.231.0.0/24 ... 10.231.15.0/24")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for name in (*COMPUTE_HOSTS, *WEB_HOSTS):
            netns = f"rexec-cluster{self.index}-{name}"
            link = f"rxc{self.index}-{name}"
            run("ip", "netns", "add", netns)
            self.made_netns.append(netns)
            run("ip", "link", "add", link, "type", "veth", "peer", "name", f"{link}p")
            run("ip", "link", "set", f"{link}p", "netns", netns)
            run("ip", "-n", netns, "link", "set", f"{link}p", "name", "eth0")
            address = f"{self.prefix}.{HOST_NUMBER[name]}"
            run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", netns, "link", "set", "eth0", "up")
            run("ip", "-n", netns, "link", "set", "lo", "up")
            run("ip", "link", "set", link, "master", self.bridge, "up")
            directory = self.directory / name
            directory.mkdir()
            directory.chmod(0o755)
            self.hosts[name] = Host(name, netns, address, link, directory)

    def remove(self) -> None:
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.kill()
        for netns in self.made_netns:  # the veth pairs go with their namespace
            run("ip", "netns", "del", netns, check=False)
        if self.index >= 0:
            run("ip", "link", "del", self.bridge, check=False)
            for host in self.hosts.values():
                run("ip", "link", "del", host.link, check=False)


@dataclass
class Postgres:
    """A throwaway PostgreSQL 15 listening on the bridge's address, trusting the subnet."""

    root: Path
    address: str
    subnet: str
    data: Path = field(init=False)
    started: bool = False

    def __post_init__(self) -> None:
        self.data = self.root / "data"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            cwd=self.root,
            timeout=60,
        )

    def start(self) -> str:
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "rexec", "--auth=trust", "-N"
        )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet} trust\n")
        options = (
            f"-p {PG_PORT} -k {self.root} -c listen_addresses={self.address} -c fsync=off "
            "-c max_connections=200"
        )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip
        self.started = True
        self._as_postgres(
            str(PG_BIN / "createdb"), "-h", str(self.root), "-p", str(PG_PORT),
            "-U", "rexec", "rexec",
        )  # fmt: skip
        return f"postgresql://rexec@{self.address}:{PG_PORT}/rexec"

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._as_postgres(
                    str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
                )
            self.started = False


def _clean_env() -> dict[str, str]:
    """The environment of every node: no REXEC_* settings of whoever runs the tests."""
    return {k: v for k, v in UTF8.items() if not k.startswith("REXEC")}


class Cluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.network = Network(directory)
        self.postgres: Postgres | None = None
        self.database_url = ""
        self.web_mode = ""
        #: Registry ids of c1 and c2 (the "registry" mode of the web nodes).
        self.registered: dict[str, int] = {}
        self._tokens: dict[str, str] = {}

    # ------------------------------------------------------------------ hosts
    @property
    def compute(self) -> list[Host]:
        return [self.network.hosts[n] for n in COMPUTE_HOSTS]

    @property
    def web(self) -> list[Host]:
        return [self.network.hosts[n] for n in WEB_HOSTS]

    def node_name(self, host: Host) -> str:
        """How the web nodes name a compute node (``computeNode``, ``name``)."""
        return f"{host.address}:{COMPUTE_PORT}"

    def by_node_name(self, name: str) -> Host:
        return next(h for h in self.compute if self.node_name(h) == name)

    def url(self, host: Host) -> str:
        return f"http://{host.address}:{WEB_PORT}"

    # ------------------------------------------------------------------ set-up
    def build(self) -> None:
        self.network.build()
        pg_root = Path(tempfile.mkdtemp(prefix="rexec-cluster-pg-"))
        self.postgres = Postgres(pg_root, self.network.gateway, self.network.subnet)
        self.database_url = self.postgres.start()
        users = self.directory / "users"
        UsersFile(users).add(COMPUTE_USER, COMPUTE_PASSWORD)
        (self.directory / "compute.password").write_text(COMPUTE_PASSWORD + "\n")
        for host in self.compute:
            self._write_compute_config(host, users)
            self.start_compute(host, wait=False)
        for host in self.compute:
            self.wait_compute(host)
        self.start_web_nodes("settings")

    def remove(self) -> None:
        try:
            self.network.remove()
        finally:
            if self.postgres is not None:
                self.postgres.stop()
                shutil.rmtree(self.postgres.root, ignore_errors=True)

    def _write_compute_config(self, host: Host, users: Path) -> None:
        workdir = host.directory / "work"
        workdir.mkdir(exist_ok=True)
        workdir.chmod(0o755)  # the shells' account must reach it
        (host.directory / "rexec.toml").write_text(
            f'[server]\nhost = "{host.address}"\nport = {COMPUTE_PORT}\nremote = true\n'
            "shutdown_grace = 2.0\n\n"
            f'[auth]\nusers_file = "{users}"\n\n'
            "[pool]\ninitial = 2\nmax = 8\nwait_timeout = 3.0\n\n"
            f'[session]\nworkdir = "{workdir}"\n'
        )

    def start_compute(self, host: Host, wait: bool = True) -> None:
        command = [_python(), "-m", "rexec.cli", "serve"]
        host.launch([*command, "--config", str(host.directory / "rexec.toml")], _clean_env())
        if wait:
            self.wait_compute(host)

    def wait_compute(self, host: Host, timeout: float = 90) -> None:
        import socket

        def greets() -> bool:
            assert host.alive, f"{host.name} exited:\n{host.log_text()}"
            with socket.create_connection((host.address, COMPUTE_PORT), timeout=2) as s:
                s.settimeout(2)
                return s.recv(4) == b"Rsrv"

        wait_until(f"compute node {host.name} greets", greets, timeout)

    def _write_web_config(self, host: Host, mode: str) -> Path:
        nodes = self.compute if mode == "settings" else self.compute[:1]
        tables = "".join(
            f'\n[[compute]]\nhost = "{n.address}"\nport = {COMPUTE_PORT}\n'
            f'user = "{COMPUTE_USER}"\npassword_file = "../compute.password"\npool_max = 8\n'
            for n in nodes
        )
        config = host.directory / "web.toml"
        config.write_text(
            f'[server]\nhost = "{host.address}"\nport = {WEB_PORT}\n'
            f"compute_connect_timeout = {CONNECT_TIMEOUT}\nretry_after = 1\n\n"
            f'[database]\nurl = "{self.database_url}"\n\n'
            "[auth]\nlogin_delay_base = 0.1\n\n"
            "[services]\nreconcile_interval = 2.0\nwait = 30.0\n\n"
            f'[nodes]\ncheck_interval = {CHECK_INTERVAL}\nsecret = "{NODE_SECRET}"\n' + tables
        )
        return config

    def start_web(self, host: Host, mode: str | None = None, timeout: float = 60) -> None:
        config = self._write_web_config(host, mode or self.web_mode)
        env = {**_clean_env(), "REXEC_ADMIN_PASSWORD": ADMIN_PASSWORD}
        host.launch([_python(), "-m", "rexec.cli", "web", "--config", str(config)], env)

        def serves() -> bool:
            assert host.alive, f"web node {host.name} exited:\n{host.log_text()}"
            return httpx.get(f"{self.url(host)}/openapi.json", timeout=3).status_code == 200

        wait_until(f"web node {host.name} serves", serves, timeout)

    def start_web_nodes(self, mode: str) -> None:
        """(Re)start both web nodes: ``settings`` (the 3 compute nodes as [[compute]]
        tables) or ``registry`` (c0 as a table, c1 and c2 registered by POST /computenodes)."""
        for host in self.web:
            host.stop()
        if self.web_mode == "registry" and mode != "registry":
            self._unregister()
        self.web_mode = mode
        for host in self.web:  # one after the other: the first makes the schema and admin
            self.start_web(host, mode)
        if mode == "registry":
            self._register()

    def _register(self) -> None:
        with self.client(self.web[0]) as admin:
            for host in self.compute[1:]:
                body = {
                    "host": host.address,
                    "port": COMPUTE_PORT,
                    "user": COMPUTE_USER,
                    "password": COMPUTE_PASSWORD,
                    "poolMax": 8,
                }
                reply = admin.post("/computenodes", json=body)
                assert reply.status_code == 201, reply.text
                assert reply.json()["state"] == "healthy", reply.text
                self.registered[host.name] = reply.json()["id"]

    def _unregister(self) -> None:
        with self.client(self.web[0]) as admin:
            for node_id in self.registered.values():
                admin.delete(f"/computenodes/{node_id}")
        self.registered.clear()

    # ------------------------------------------------------------------ clients
    def token(self, host: Host) -> str:
        reply = httpx.post(
            f"{self.url(host)}/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["access_token"]

    def client(self, host: Host, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(host)}"}
        return httpx.Client(base_url=self.url(host), headers=headers, timeout=timeout)

    def node_states(self, web: Host) -> dict[str, str]:
        """``GET /computenodes`` of one web node: compute node name -> state."""
        with self.client(web, timeout=10) as admin:
            reply = admin.get("/computenodes")
            assert reply.status_code == 200, reply.text
            return {n["name"]: n["state"] for n in reply.json()}

    def wait_state(self, host: Host, state: str, timeout: float = 15) -> float:
        """Wait until every web node shows ``host`` in ``state``; the seconds it took."""
        started = time.monotonic()
        for web in self.web:
            wait_until(
                f"{web.name} shows {host.name} {state}",
                lambda web=web: self.node_states(web).get(self.node_name(host)) == state,
                max(0.5, timeout - (time.monotonic() - started)),
            )
        return time.monotonic() - started

    # ------------------------------------------------------------------ between tests
    def restore(self) -> None:
        """Back to the full cluster: every link up, every process running, no node
        drained, every compute node healthy on every web node."""
        for host in self.network.hosts.values():
            host.heal()
        for host in self.compute:
            if not host.alive:
                host.kill()  # its shells, if any are left
                self.start_compute(host)
        for host in self.web:
            if not host.alive:
                host.kill()
                self.start_web(host)
        if self.registered:
            with self.client(self.web[0]) as admin:
                for node_id in self.registered.values():
                    admin.post(f"/computenodes/{node_id}/undrain")
        for host in self.compute:
            self.wait_state(host, "healthy", timeout=30)


def _python() -> str:
    import sys

    return sys.executable


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "multi-host tests need root (network namespaces, veth pairs, a bridge)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"rexec-cluster-probe-{os.getpid()}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add does not work here: {made.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL binaries not installed in {PG_BIN}"
    if shutil.which("runuser") is None:
        return "runuser is missing: cannot start PostgreSQL as postgres"
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="rexec-cluster-"))
    directory.chmod(0o755)
    built = Cluster(directory)
    try:
        built.build()
        yield built
    finally:
        built.remove()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def healthy(cluster: Cluster) -> Cluster:
    """The cluster, whole again before and after the test (restarts what a test killed)."""
    cluster.restore()
    return cluster
