"""``rexec serve`` configured from ``REXEC_*`` variables, and its pool sized from memory
(``pool.memory_per_shell``) and its shells' threads from the CPUs: real processes, and
for the container case a real control group with a memory limit and a CPU quota, which
the test makes and removes (skipped where the kernel lets it make none)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rexec.client
from bench import servers
from rexec import config, host
from tests.conftest import UTF8, Server, free_port, wait_for_id_string

MIB = 1024 * 1024


def _serve(tmp_path: Path, env: dict[str, str], prefix: tuple[str, ...] = ()) -> Server:
    """``rexec serve`` with only its port and workdir in a file, the rest from ``env``."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rexec-test-"))
    workdir.chmod(0o755)
    path = tmp_path / "rexec.toml"
    path.write_text(f'[server]\nport = {port}\n[session]\nworkdir = "{workdir}"\n')
    command = [*prefix, *servers.rexec_serve(path)]
    started = servers.launch("rexec", port, command, tmp_path / "log", env={**UTF8, **env})
    return Server(started.name, started.port, started.process, started.log)


def _ready(node: Server, metrics: int) -> dict:
    try:
        wait_for_id_string(node.port)
    except TimeoutError:
        raise AssertionError("rexec did not start:\n" + node.log_text()) from None
    reply = httpx.get(f"http://127.0.0.1:{metrics}/readyz", timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()["pool"]


def _exit_of(tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    node = _serve(tmp_path, env)
    try:
        code = node.process.wait(timeout=60)
    finally:
        node.stop()
    return code, node.log_text()


# ---------------------------------------------------------------- the variables


def test_variables_come_between_the_file_and_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "rexec.toml"
    path.write_text('[pool]\nmax = 3\ninitial = 1\n[startup]\npackages = ["stats"]\n')
    environ = {
        "REXEC_POOL_MAX": "5",
        "REXEC_SERVER_REMOTE": "yes",
        "REXEC_LIMITS_EVAL_TIMEOUT": "2.5",
        "REXEC_STARTUP_PACKAGES": '["MASS", "stats4"]',
        "REXEC_AUTH_USERS_FILE": "/etc/rexec/users",
        "REXEC_NOT_A_SETTING": "ignored",  # other tools' variables share the prefix
    }
    cfg = config.load(path, {"pool.initial": 2}, environ=environ)
    assert cfg["pool.max"] == 5  # the variable beats the file
    assert cfg["pool.initial"] == 2  # the flag beats the file
    assert cfg["server.remote"] is True and cfg["limits.eval_timeout"] == 2.5
    assert cfg["startup.packages"] == ["MASS", "stats4"]
    assert cfg["auth.users_file"] == "/etc/rexec/users"
    assert config.load(path, {"pool.max": 7}, environ=environ)["pool.max"] == 7
    assert {"pool.max", "server.remote"} <= cfg.explicit


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("REXEC_POOL_MAX", "eight", "REXEC_POOL_MAX: expected an integer, got 'eight'"),
        ("REXEC_SERVER_REMOTE", "on", "REXEC_SERVER_REMOTE: expected true or false"),
        ("REXEC_POOL_MODE", "thread", "REXEC_POOL_MODE: pool.mode: must be one of fork, spawn"),
        ("REXEC_R_ARGS", "--vanilla", "REXEC_R_ARGS: expected a TOML array of strings"),
        ("REXEC_R_ARGS", "[1, 2]", "REXEC_R_ARGS: r.args: expected a list of strings"),
    ],
)
def test_a_bad_variable_is_an_error_naming_it(variable: str, text: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match="^" + message.replace("(", r"\(")):
        config.load(environ={variable: text})


def test_the_readme_names_every_setting_s_variable() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for setting in config.SETTINGS:
        assert f"| `{setting.key}` | `{config.env_name(setting.key)}` |" in readme


def test_a_compute_node_configured_by_its_environment(tmp_path: Path) -> None:
    metrics = free_port()
    env = {"REXEC_POOL_MAX": "3", "REXEC_POOL_INITIAL": "1", "REXEC_METRICS_PORT": str(metrics)}
    node = _serve(tmp_path, env)
    try:
        assert _ready(node, metrics)["max"] == 3
        with rexec.client.connect(port=node.port, timeout=30) as r:
            assert r.eval("1 + 1") == 2
    finally:
        node.stop()


def test_a_bad_variable_stops_the_node_with_its_name(tmp_path: Path) -> None:
    code, log = _exit_of(tmp_path, {"REXEC_POOL_MAX": "eight"})
    assert code == 2
    assert "REXEC_POOL_MAX: expected an integer" in log


# ---------------------------------------------------------------- sizing from memory


def test_without_a_limit_the_pool_is_sized_from_the_machine_s_memory(tmp_path: Path) -> None:
    lines = Path("/proc/meminfo").read_text().splitlines()
    total = next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemTotal:"))
    assert host.physical_memory() == total  # the kernel's own number
    limit = host.memory_limit() or total
    per_shell = max((limit - 512 * MIB) // 3, MIB)  # three fit, a fourth does not
    metrics = free_port()
    env = {
        "REXEC_POOL_MEMORY_PER_SHELL": str(per_shell),
        "REXEC_POOL_INITIAL": "1",
        "REXEC_METRICS_PORT": str(metrics),
    }
    node = _serve(tmp_path, env)
    try:
        assert _ready(node, metrics)["max"] == 3
        assert "pool.max = 3:" in node.log_text()
    finally:
        node.stop()


def test_an_explicit_pool_max_caps_the_memory_sizing(tmp_path: Path) -> None:
    metrics = free_port()
    env = {
        "REXEC_POOL_MEMORY_PER_SHELL": str(MIB),  # thousands would fit
        "REXEC_POOL_MAX": "2",
        "REXEC_POOL_INITIAL": "1",
        "REXEC_METRICS_PORT": str(metrics),
    }
    node = _serve(tmp_path, env)
    try:
        assert _ready(node, metrics)["max"] == 2
    finally:
        node.stop()


def test_no_room_for_one_shell_stops_the_node_with_the_numbers(tmp_path: Path) -> None:
    code, log = _exit_of(tmp_path, {"REXEC_POOL_MEMORY_PER_SHELL": str(1 << 50)})
    assert code == 2
    assert "pool.memory_per_shell: 1073741824 MiB a shell leaves no room for one" in log


# ---------------------------------------------------------------- in a container's group


class Group:
    """A control group below this process's own, in v1's memory and cpu hierarchies or
    in v2; the processes ``prefix`` starts run in it."""

    def __init__(self, memory: Path, cpu: Path, version: int) -> None:
        self.memory, self.cpu, self.version = memory, cpu, version

    def limit(self, memory: int, cpus: float) -> None:
        period = 100_000
        if self.version == 1:
            (self.memory / "memory.limit_in_bytes").write_text(str(memory))
            (self.cpu / "cpu.cfs_period_us").write_text(str(period))
            (self.cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * period)))
        else:
            (self.memory / "memory.max").write_text(str(memory))
            (self.cpu / "cpu.max").write_text(f"{int(cpus * period)} {period}")

    @property
    def prefix(self) -> tuple[str, ...]:
        procs = {self.memory / "cgroup.procs", self.cpu / "cgroup.procs"}
        joins = "; ".join(f'echo $$ > "{p}"' for p in sorted(procs))
        return ("/bin/sh", "-c", f'{joins}; exec "$@"', "sh")

    def remove(self) -> None:
        for directory in {self.memory, self.cpu}:
            for _ in range(100):  # its processes are gone once the kernel says so
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def _own(hierarchy: Path, controller: str | None) -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, names, path = line.split(":", 2)
        if controller is None and number == "0" and names == "":
            return hierarchy / path.lstrip("/")
        if controller is not None and controller in names.split(","):
            return hierarchy / path.lstrip("/")
    return None


@pytest.fixture
def group() -> Iterator[Group]:
    name = f"rexec-test-{uuid.uuid4().hex[:8]}"
    made: Group | None = None
    v1 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/cpu")
    if os.geteuid() == 0 and all((p / "cgroup.procs").exists() for p in v1):
        memory, cpu = _own(v1[0], "memory"), _own(v1[1], "cpu")
        if memory and cpu and memory.is_dir() and cpu.is_dir():
            try:
                (memory / name).mkdir()
                (cpu / name).mkdir()
                made = Group(memory / name, cpu / name, 1)
            except OSError:
                Group(memory / name, cpu / name, 1).remove()
    if made is None and os.geteuid() == 0 and Path("/sys/fs/cgroup/cgroup.controllers").exists():
        own = _own(Path("/sys/fs/cgroup"), None)
        enabled = (own / "cgroup.subtree_control").read_text().split() if own else []
        if own and {"memory", "cpu"} <= set(enabled):
            try:
                (own / name).mkdir()
                made = Group(own / name, own / name, 2)
            except OSError:
                pass
    if made is None:
        pytest.skip("this kernel lets the test make no control group with memory and cpu")
    try:
        yield made
    finally:
        made.remove()


def test_the_group_s_limits_are_what_the_kernel_enforces(group: Group) -> None:
    group.limit(memory=1536 * MIB, cpus=0.5)
    probe = "from rexec import host; print(host.memory_limit(), host.cpu_limit())"
    out = subprocess.run(
        [*group.prefix, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=UTF8,
        check=True,
    ).stdout.split()
    assert out == [str(1536 * MIB), "0.5"]


def _in_group(tmp_path: Path, group: Group, per_shell_mib: int) -> tuple[Server, int]:
    metrics = free_port()
    env = {
        "REXEC_POOL_MEMORY_PER_SHELL": str(per_shell_mib * MIB),
        "REXEC_POOL_MEMORY_RESERVED": str(512 * MIB),
        "REXEC_POOL_INITIAL": "1",
        "REXEC_METRICS_PORT": str(metrics),
    }
    node = _serve(tmp_path, env, group.prefix)
    return node, _ready(node, metrics)["max"]


def test_a_node_in_a_container_sizes_its_pool_from_the_group_s_memory_limit(
    tmp_path: Path, group: Group
) -> None:
    group.limit(memory=2048 * MIB, cpus=2.0)
    node, most = _in_group(tmp_path, group, per_shell_mib=512)
    try:
        assert most == 3  # (2048 - 512) / 512, where the machine's memory gives far more
        assert "pool.max = 3: 2048 MiB (the control group's memory limit)" in node.log_text()
        with rexec.client.connect(port=node.port, timeout=30) as r:
            inside = r.eval("as.integer(Sys.getpid())")
        assert str(inside) in (group.memory / "cgroup.procs").read_text().split()
    finally:
        node.stop()


def test_a_node_in_a_container_gives_its_shells_the_group_s_cpus(
    tmp_path: Path, group: Group
) -> None:
    group.limit(memory=1536 * MIB, cpus=1.0)
    node, most = _in_group(tmp_path, group, per_shell_mib=1024)
    try:
        assert most == 1
        with rexec.client.connect(port=node.port, timeout=30) as r:
            threads = r.eval('as.integer(Sys.getenv("OPENBLAS_NUM_THREADS"))')
        # shell.threads 0: the usable CPUs over pool.max; the quota, not the cores, counts
        assert threads == min(len(os.sched_getaffinity(0)), 1)
    finally:
        node.stop()
