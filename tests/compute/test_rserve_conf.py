"""`rexec serve --rserve-conf`: Rserve's own configuration file, with Rserve's parsing."""

from __future__ import annotations

import subprocess
import sys

from rexec.compute import rserve_conf
from tests.conftest import UTF8, free_port, wait_for_id_string
from tests.qap import RawClient


def test_rserve_boolean_rules() -> None:
    assert [rserve_conf.is_true(v) for v in ("yes", "enable", "1", "TRUE", "e")] == [True] * 5
    assert [rserve_conf.is_true(v) for v in ("true", "on", "no", "disable", "")] == [False] * 5


def test_parsing_quirks_are_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RX_DIR", "/srv/r")
    path = tmp_path / "Rserv.conf"
    path.write_text(
        "# comment\n; also a comment\n  Port 7000\nremote true\nauth required\n"
        "workdir ${RX_DIR}/work  \nshutdown no\noob enable\nmaxinbuf 64\n"
        "eval x <- 1\nsource /srv/init.R\nencoding latin1\nfoo.bar 1\nmsg.id enable\n"
        "fileio=no\n"
    )
    settings, warnings = rserve_conf.load(path)
    assert settings["server.port"] == 7000  # keys are case-insensitive
    assert "server.host" not in settings  # 'true' is not true for Rserve
    assert settings["auth.required"] is True
    assert settings["session.workdir"] == "/srv/r/work"
    assert settings["server.shutdown"] == "disabled"
    assert settings["session.oob"] is True
    assert settings["limits.maxinbuf"] == 64 * 1024
    assert settings["startup.eval"] == ["x <- 1", 'try(source("/srv/init.R"))']
    assert settings["session.encoding"] == "latin1"
    assert settings["session.fileio"] is False
    assert any("'foo.bar'" in w for w in warnings)
    assert any("'msg.id'" in w for w in warnings)


def test_port_with_spaced_equals_sign_is_ignored_as_in_rserve(tmp_path) -> None:
    path = tmp_path / "Rserv.conf"
    path.write_text("port = 7000\nremote = enable\n")
    settings, _ = rserve_conf.load(path)
    assert settings == {}


def test_serve_with_rserve_conf(tmp_path) -> None:
    port = free_port()
    conf = tmp_path / "Rserv.conf"
    conf.write_text(
        f"port {port}\nworkdir {tmp_path / 'work'}\neval preloaded <- 'from Rserv.conf'\n"
        "fileio disable\nmsg.id enable\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rexec.cli",
            "serve",
            "--rserve-conf",
            str(conf),
            "--pool-initial",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=UTF8,
        text=True,
    )
    try:
        wait_for_id_string(port)
        with RawClient(port) as c:
            assert c.eval("preloaded").value() == "from Rserv.conf"
            from rexec.protocol import Cmd, Err, string_param

            c.send(Cmd.OPEN_FILE, string_param("x"))
            assert c.reply().status == Err.ACCESS_DENIED
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert "'msg.id' is not supported" in output
