"""`rexec serve --rserve-conf`: Rserve's own configuration file, with Rserve's parsing,
every key of Rserve 1.8's setConfig either mapped or reported."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench import servers
from rexec.compute import rserve_conf
from rexec.protocol import Cmd, Err, string_param
from tests.conftest import UTF8, free_port, r_package_file, wait_for_id_string
from tests.qap import RawClient


def words(text: str) -> list[str]:
    return text.split()


#: Every key Rserve 1.8-11's setConfig() (src/Rserv.c) accepts; 1.8-15 has the same.
RSERVE_KEYS = frozenset(
    words(
        """
    allow auth auth.function auto.gid auto.uid cachepwd chroot close.all.stdio console.input
    console.oob control daemon deamon default.gid default.uid encoding eval fileio
    forward.stdio gid http.port http.raw.body http.tls.port http.upgrade.websockets
    http.user https.port https.user interactive io.use.context ipv6 keep.alive log.io
    maxinbuf maxsendbuf msg.id oob oob.idle.interval pid.file plaintext port pwdfile qap
    qap.oc qap.port qap.tls.port r-control r.control random.gid random.uid random.uid.range
    remote rsa.key rserve rserve.oc shutdown socket sockmod source su switch.qap.tls tag.argv
    tls.ca tls.cert tls.client tls.key tls.port uid ulog umask use.idle.callback websockets
    websockets.port websockets.qap websockets.qap.oc websockets.text websockets.tls.port
    websockets.user workdir workdir.clean workdir.mode workdir.parent.mode
    """
    )
)


def load_text(tmp_path: Path, text: str) -> tuple[dict, list[str]]:
    path = tmp_path / "Rserv.conf"
    path.write_text(text)
    return rserve_conf.load(path)


def test_rserve_boolean_rules() -> None:
    assert [rserve_conf.is_true(v) for v in ("yes", "enable", "1", "TRUE", "e")] == [True] * 5
    assert [rserve_conf.is_true(v) for v in ("true", "on", "no", "disable", "")] == [False] * 5


def test_numbers_are_read_as_rserve_reads_them() -> None:
    # satoi(): 0x... hexadecimal, 0 + digit octal, else atoi
    cases = {"6311": 6311, "0x18a7": 6311, "014247": 6311, " 42x": 42, "08": 0, "0": 0, "": 0}
    assert {text: rserve_conf.satoi(text) for text in cases} == cases
    assert rserve_conf.satoi("-5") == -5


def test_parsing_quirks_are_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RX_DIR", "/srv/r")
    settings, warnings = load_text(
        tmp_path,
        "# comment\n; also a comment\n  Port 7000\nremote true\nauth required\n"
        f"pwdfile {tmp_path / 'pw'}\nplaintext enable\n"
        "workdir ${RX_DIR}/work  \nshutdown no\noob enable\nmaxinbuf 64\nmaxsendbuf 0x40\n"
        "eval x <- 1\nsource /srv/init.R\nencoding latin1\nfoo.bar 1\nmsg.id enable\n"
        "fileio=no\n",
    )
    assert settings["server.port"] == 7000  # keys are case-insensitive
    assert "server.host" not in settings  # 'true' is not true for Rserve
    assert settings["auth.required"] is True
    assert settings["session.workdir"] == "/srv/r/work"
    assert settings["server.shutdown"] == "disabled"
    assert settings["session.oob"] is True
    assert settings["limits.maxinbuf"] == 64 * 1024
    assert "limits.maxsendbuf" not in settings  # atol("0x40") is 0, as in Rserve: unset
    assert settings["startup.eval"] == [
        rserve_conf.startup_line("x <- 1"),
        rserve_conf.startup_line('try(source("/srv/init.R"))'),
    ]
    assert settings["session.encoding"] == "latin1"
    assert settings["session.fileio"] is False
    assert any("'foo.bar' is not an Rserve setting" in w for w in warnings)
    assert any("'msg.id' is not supported" in w for w in warnings)


def test_port_with_spaced_equals_sign_is_ignored_as_in_rserve(tmp_path) -> None:
    settings, _ = load_text(tmp_path, "port = 7000\nremote = enable\n")
    assert settings == {}


def test_every_rserve_key_is_known_and_is_in_the_installed_rserve() -> None:
    handled = set(rserve_conf._HANDLED) | set(rserve_conf._UNSUPPORTED)
    assert handled == RSERVE_KEYS
    binary = Path(r_package_file("Rserve", "libs", "Rserve")).read_bytes()
    missing = [key for key in sorted(RSERVE_KEYS) if key.encode() + b"\0" not in binary]
    assert missing == [], "keys the installed Rserve does not know"


#: A value for each key that asks Rserve for something (not its default).
_ASKING = {
    **dict.fromkeys(RSERVE_KEYS, "enable"),
    **dict.fromkeys(
        words(
            "port qap.port tls.port qap.tls.port http.port https.port http.tls.port "
            "websockets.port websockets.tls.port oob.idle.interval maxinbuf maxsendbuf"
        ),
        "7000",
    ),
    **dict.fromkeys(
        words("uid gid default.uid default.gid umask workdir.mode workdir.parent.mode"), "0750"
    ),
    **dict.fromkeys(words("qap rserve workdir.clean interactive"), "disable"),
    "random.uid.range": "40000..50000",
    "su": "client",
    "encoding": "latin1",
    "auth": "required",
    "eval": "x <- 1",
    "source": "/srv/init.R",
    "workdir": "/srv/work",
    "cachepwd": "indefinitely",
    "auth.function": "check_user",
    "socket": "/run/rserve.sock",
    "chroot": "/srv/jail",
}
#: Keys that do nothing on their own, in Rserve as in rexec.
_ALONE_NO_EFFECT = {
    "sockmod": "only with socket",
    "allow": "only with remote",
    "su": "only with uid or gid",
}


@pytest.mark.parametrize("key", sorted(RSERVE_KEYS))
def test_each_key_is_mapped_or_named_in_a_warning(tmp_path, key) -> None:
    settings, warnings = load_text(tmp_path, f"{key} {_ASKING[key]}\n")
    named = [w for w in warnings if f"'{key}'" in w or f"'{key} " in w]
    if key in _ALONE_NO_EFFECT:
        assert settings == {} and warnings == []
    else:
        assert settings or named, f"{key}: neither mapped nor reported"
    assert all(w.startswith(str(tmp_path)) for w in warnings)


def test_auth_required_with_a_pwdfile_and_plaintext(tmp_path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("bob secret\n")
    settings, warnings = load_text(
        tmp_path, f"auth required\npwdfile {pw}\nplaintext enable\nremote enable\n"
    )
    assert settings == {
        "auth.required": True,
        "auth.users_file": str(pw),
        "auth.plaintext": True,
        "server.host": "0.0.0.0",
    }
    assert warnings == []


def test_auth_settings_rexec_treats_otherwise_are_reported(tmp_path) -> None:
    # auth required alone: Rserve lets everybody in, so rexec turns authentication off
    settings, warnings = load_text(tmp_path, "auth required\n")
    assert settings == {"auth.required": False}
    assert any("lets every user name and password in" in w for w in warnings)
    # a password file without plaintext: its clear-text passwords are refused, and said so
    settings, warnings = load_text(tmp_path, f"auth enable\npwdfile {tmp_path}/pw\n")
    assert settings == {"auth.required": True, "auth.users_file": f"{tmp_path}/pw"}
    assert any("'pwdfile'" in w and "'plaintext enable'" in w for w in warnings)
    # an R function deciding logins: nobody gets in (never everybody)
    settings, warnings = load_text(tmp_path, "auth required\nauth.function ok\n")
    assert settings == {"auth.required": True, "auth.users_file": os.devnull}
    assert any("every login is refused" in w for w in warnings)
    # remote without authentication is allowed, as in Rserve, but loudly
    settings, warnings = load_text(tmp_path, "remote enable\nipv6 enable\n")
    assert settings == {"server.host": "::"}
    assert any("anyone who can reach this machine" in w for w in warnings)
    # `remote enable` + `allow 127.0.0.1` (Rserve 0.6's default) admits loopback only
    settings, warnings = load_text(tmp_path, "remote enable\nallow 127.0.0.1\nauth required\n")
    assert "server.host" not in settings


@pytest.mark.skipif(os.geteuid() != 0, reason="uid/gid switching needs root, as in Rserve")
def test_uid_gid_and_su_map_onto_the_shell_account(tmp_path) -> None:
    account = pwd.getpwnam("rexec")
    group = grp.getgrgid(account.pw_gid).gr_name
    settings, warnings = load_text(tmp_path, f"uid {account.pw_uid}\ngid {account.pw_gid}\n")
    assert settings == {"shell.user": "rexec", "shell.group": group}
    assert warnings == []
    settings, warnings = load_text(tmp_path, f"uid 0x{account.pw_uid:x}\nsu server\n")
    assert settings == {"shell.user": "rexec"}
    assert any("'su'" in w and "as root" in w for w in warnings)
    settings, warnings = load_text(tmp_path, "uid 0\n")  # Rserve stays root; rexec never
    assert settings == {}
    assert any("never runs R as root" in w for w in warnings)


def test_tls_needs_a_readable_certificate(tmp_path) -> None:
    settings, warnings = load_text(tmp_path, "tls.port 7001\nswitch.qap.tls enable\n")
    assert settings == {}
    assert any("no usable tls.cert" in w for w in warnings)
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    settings, warnings = load_text(
        tmp_path, f"tls.cert {cert}\ntls.key {tmp_path}/missing.pem\nqap.tls.port 7001\n"
    )
    assert settings == {"tls.cert": str(cert), "tls.port": 7001}
    assert any("'tls.key'" in w and "cannot read" in w for w in warnings)


def test_client_certificates_and_qap_disable(tmp_path) -> None:
    cert, ca = tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.write_text("x")
    ca.write_text("x")
    tls = f"tls.cert {cert}\ntls.key {cert}\ntls.port 7001\n"
    settings, warnings = load_text(tmp_path, tls + f"tls.ca {ca}\ntls.client match:web-1,web-2\n")
    assert settings["tls.ca"] == str(ca) and settings["tls.client"] == "match:web-1,web-2"
    assert warnings == []
    # require without a CA: kept (rexec then refuses to start, as no client could verify)
    settings, warnings = load_text(tmp_path, tls + "tls.client require\n")
    assert settings["tls.client"] == "require"
    assert any("'tls.client'" in w and "tls.ca" in w for w in warnings)
    # an invalid specification is ignored with a warning, as by Rserve
    settings, warnings = load_text(tmp_path, tls + "tls.client sometimes\n")
    assert "tls.client" not in settings
    assert any("invalid specification" in w for w in warnings)
    # qap disable with a TLS port: QAP on the TLS port only; without one, still served
    settings, warnings = load_text(tmp_path, tls + "qap disable\n")
    assert settings["tls.only"] is True and warnings == []
    settings, warnings = load_text(tmp_path, "rserve disable\n")
    assert settings == {}
    assert any("'rserve disable'" in w and "still serves" in w for w in warnings)


def test_several_files_are_read_in_order_into_one_state(tmp_path) -> None:
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    first.write_text("eval a <- 1\nauth required\nport 7000\n")
    second.write_text(f"eval b <- 2\npwdfile {tmp_path}/pw\nplaintext enable\nport 7001\n")
    settings, _ = rserve_conf.load_all([first, second])
    assert settings["startup.eval"] == [
        rserve_conf.startup_line("a <- 1"),
        rserve_conf.startup_line("b <- 2"),
    ]
    assert settings["auth.required"] is True  # the pwdfile of the second file counts
    assert settings["server.port"] == 7001


def _serve(conf: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rexec.cli", "serve", "--rserve-conf", str(conf), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=UTF8,
        text=True,
        start_new_session=True,
    )


def _workdir() -> Path:
    # The shells' account must reach its directories: not below pytest's 0700 tmp.
    workdir = Path(tempfile.mkdtemp(prefix="rexec-test-"))
    workdir.chmod(0o755)
    return workdir


def test_serve_with_rserve_conf(tmp_path) -> None:
    port = free_port()
    workdir = _workdir()
    conf = tmp_path / "Rserv.conf"
    conf.write_text(
        f"port {port}\nworkdir {workdir}\neval preloaded <- 'from Rserv.conf'\n"
        "eval stop('an error at start-up does not stop Rserve')\nsource /nonexistent.R\n"
        "eval after <- 1 +\neval after <- 2\nfileio disable\nmsg.id enable\n"
    )
    process = _serve(conf, "--pool-initial", "1")
    try:
        wait_for_id_string(port)
        with RawClient(port) as c:
            assert c.eval("preloaded").value() == "from Rserv.conf"
            assert c.eval("after").value() == 2  # text that does not parse is skipped
            c.send(Cmd.OPEN_FILE, string_param("x"))
            assert c.reply().status == Err.ACCESS_DENIED
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
        shutil.rmtree(workdir, ignore_errors=True)
    assert "'msg.id' is not supported" in output


def test_octal_port_means_what_it_means_to_rserve(tmp_path) -> None:
    """Rserve started with ``port 0<octal>`` listens where rexec would."""
    port = free_port()
    text = f"port 0{port:o}\n"
    settings, _ = load_text(tmp_path, text)
    assert settings == {"server.port": port}
    directory = tmp_path / "rserve"
    conf = tmp_path / "octal.conf"
    conf.write_text(f"{text}workdir {directory}\ndaemon disable\n")
    binary = r_package_file("Rserve", "libs", "Rserve")
    rserve = servers.launch(
        "Rserve", port, ["R", "CMD", binary, "--vanilla", "--RS-conf", str(conf)], tmp_path / "log"
    )
    try:
        wait_for_id_string(port, timeout=30)
    finally:
        rserve.stop()
