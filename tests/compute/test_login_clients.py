"""Rserve's standard authentication config (``auth required``, ``pwdfile``, ``plaintext
enable``) given to a real Rserve 1.8 and to ``rexec serve --rserve-conf``, the same file
for both: the ID strings are compared byte for byte (all but the random salt), and the
real clients log in to both — the Java client with crypt (it crypts whenever it sees
``ARuc``), RSclient's ``RSlogin`` and pyRserve in plain text.

Rserve <= 1.8-11 (Debian 12's r-cran-rserve) hands the salt to crypt() with the blank
that follows it in the ID string, which libxcrypt refuses: its correct crypt logins
fail, and crypt()'s failure token ``*0`` is then accepted as every user's password.
Fixed in Rserve 1.8-12; rexec does what the fixed Rserve does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyRserve
import pytest
from pyRserve import rtypes
from pyRserve.rexceptions import RResponseError
from pyRserve.rparser import rparse
from pyRserve.rserializer import RSerializer

from bench import servers
from rexec.compute.supervisor.users import des_crypt
from rexec.protocol import Cmd, Err, string_param
from tests.conftest import Server, compile_java, free_port, launch_rexec, r_package_file
from tests.qap import RawClient

ID_LAYOUT = b"Rsrv0103QAP1\r\n\r\nARucK.. ARpt--\r\n"  # '..': the salt
SALT = re.compile(rb"Rsrv0103QAP1\r\n\r\nARucK([./0-9A-Za-z]{2}) ARpt--\r\n")


def rserve_version() -> tuple[int, ...]:
    text = Path(r_package_file("Rserve", "DESCRIPTION")).read_text()
    version = re.search(r"^Version: (\S+)", text, re.M)
    assert version is not None
    return tuple(int(part) for part in re.split(r"[.-]", version.group(1)))


#: Rserve's crypt salt bug (see the module docstring) is in this version.
CRYPT_BROKEN = rserve_version() <= (1, 8, 11)


@pytest.fixture(scope="module")
def place() -> Iterator[Path]:
    # The shells' account must reach rexec's directories: not below pytest's 0700 tmp.
    directory = Path(tempfile.mkdtemp(prefix="rexec-login-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def auth_conf(place: Path) -> Path:
    pwdfile = place / "Rserv.pwd"
    pwdfile.write_text("# user password\nbob secret\nann s3cr3t!\n")
    pwdfile.chmod(0o600)
    conf = place / "auth.conf"
    conf.write_text(f"auth required\npwdfile {pwdfile}\nplaintext enable\n")
    return conf


@pytest.fixture(scope="module")
def rserve_auth(place: Path, auth_conf: Path) -> Iterator[Server]:
    started = servers.start_rserve(place / "rserve", auth_conf.read_text())
    server = Server(started.name, started.port, started.process, started.log)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rexec_auth(place: Path, auth_conf: Path) -> Iterator[Server]:
    """rexec with the very same file, then one of its own for port and workdir (read in
    order, as Rserve reads several --RS-conf files)."""
    port = free_port()
    local = place / "local.conf"
    local.write_text(f"port {port}\nworkdir {place / 'rexec-work'}\n")
    command = [sys.executable, "-m", "rexec.cli", "serve", "--pool-initial", "1"]
    command += ["--rserve-conf", str(auth_conf), "--rserve-conf", str(local)]
    server = launch_rexec(port, command, place / "rexec.log")
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["rserve", "rexec"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(f"{request.param}_auth")


def login(client: RawClient, user: str, password: str):
    client.send(Cmd.LOGIN, string_param(f"{user}\n{password}"))
    return client.reply()


def salt_of(client: RawClient) -> str:
    match = SALT.fullmatch(client.id_string)
    assert match, client.id_string
    return match.group(1).decode()


def test_id_string_is_rserves_byte_for_byte_but_the_salt(rserve_auth, rexec_auth) -> None:
    layouts = {}
    for server in (rserve_auth, rexec_auth):
        salts = set()
        for _ in range(8):
            with RawClient(server.port) as c:
                salts.add(salt_of(c))
                layouts[server.name] = c.id_string[:21] + b".." + c.id_string[23:]
        assert len(salts) > 1, f"{server.name}: the salt is not new for each connection"
    assert layouts == {"Rserve": ID_LAYOUT, "rexec": ID_LAYOUT}


def test_plain_text_logins(server) -> None:
    with RawClient(server.port) as c:
        assert c.eval("1L").status == Err.AUTH_FAILED  # nothing before a login
        assert c.closed_by_server()
    with RawClient(server.port) as c:
        assert login(c, "bob", "wrong").status == Err.AUTH_FAILED
        assert c.closed_by_server()
    with RawClient(server.port) as c:
        assert login(c, "nobody", "secret").status == Err.AUTH_FAILED
    with RawClient(server.port) as c:
        assert login(c, "ann", "s3cr3t!").ok
        assert c.eval("1L + 1L").value() == 2
        assert login(c, "ann", "s3cr3t!").status == Err.INV_CMD  # a second login


def test_crypt_logins(server) -> None:
    broken = server.name == "Rserve" and CRYPT_BROKEN
    with RawClient(server.port) as c:
        crypted = des_crypt(b"secret", salt_of(c))
        assert crypted is not None
        answer = login(c, "bob", crypted)
        if broken:
            assert answer.status == Err.AUTH_FAILED
        else:
            assert answer.ok
            assert c.eval("2L").value() == 2
    with RawClient(server.port) as c:  # crypt with some other salt
        salt = salt_of(c)
        assert login(c, "bob", des_crypt(b"secret", "zz" if salt != "zz" else "yy")).status == (
            Err.AUTH_FAILED
        )
    with RawClient(server.port) as c:  # crypt()'s failure token
        answer = login(c, "bob", "*0")
        assert answer.ok if broken else answer.status == Err.AUTH_FAILED


def test_java_client(server, tmp_path) -> None:
    classpath = compile_java(Path(__file__).parent / "java" / "Login.java", tmp_path)

    def java(*args: str) -> list[str]:
        run = subprocess.run(
            ["java", "-cp", classpath, "Login", *args], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.splitlines()

    # the client's own DES crypt (jcrypt) is libcrypt's
    assert java("crypt", "Kx", "pass word") == [des_crypt(b"pass word", "Kx")]
    lines = java(str(server.port), "bob", "secret", "bob", "wrong", "ann", "s3cr3t!")
    if server.name == "Rserve" and CRYPT_BROKEN:
        assert lines == ["refused 65"] * 3
    else:
        assert lines == ["login ok 4 2", "refused 65", "login ok 4 2"]


def test_rsclient_rslogin(server) -> None:
    code = f"""
        library(RSclient)
        for (pw in c("secret", "wrong")) {{
            c <- RSconnect(port = {server.port})
            ok <- RSlogin(c, "bob", pw, silent = TRUE)
            cat(ok, if (ok) RSeval(c, quote(1 + 1)) else "-", "\\n")
            close(c)
        }}
    """
    run = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["TRUE 2 ", "FALSE - "]


def pyrserve_login(conn: pyRserve.rconn.RConnector, user: str, password: str) -> None:
    """pyRserve has no login of its own: send CMD_login with its serializer, read the
    answer with its parser."""
    message = RSerializer(rtypes.CMD_login, fp=conn.sock)
    message.serialize(f"{user}\n{password}", dtTypeCode=rtypes.DT_STRING)
    message.finalize()
    rparse(conn.sock, atomicArray=False)


def test_pyrserve(server) -> None:
    conn = pyRserve.connect(port=server.port)
    with pytest.raises(RResponseError):
        conn.eval("1 + 1")  # pyRserve never logs in by itself
    conn.close()
    conn = pyRserve.connect(port=server.port)
    pyrserve_login(conn, "ann", "s3cr3t!")
    assert conn.eval("1 + 1") == 2.0
    conn.close()
    conn = pyRserve.connect(port=server.port)
    with pytest.raises(RResponseError):
        pyrserve_login(conn, "ann", "wrong")
    conn.close()
