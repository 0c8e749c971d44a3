"""Logins against the users file (rexec's argon2 entries and Rserve's password files,
plain and crypt), the ID string that offers them, and who may shut the server down."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import sys
import threading
import time

import pytest

from rexec.compute.supervisor.login import SALT_ALPHABET, Logins
from rexec.compute.supervisor.users import UsersFile, crypt_available, des_crypt
from rexec.config import Config
from rexec.protocol import Cmd, Err, parse_id_string, string_param
from tests.qap import RawClient


@pytest.fixture
def users(tmp_path):
    path = tmp_path / "users"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rexec.cli",
            "users",
            "add",
            "alice",
            "--password",
            "s3cret",
            "--file",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


def test_users_file_stores_argon2_hashes_and_refuses_wildcards(users) -> None:
    text = users.read_text()
    assert text.startswith("alice\t$argon2")
    assert "s3cret" not in text
    store = UsersFile(users)
    assert store.verify("alice", "s3cret")
    assert not store.verify("alice", "wrong")
    assert not store.verify("*", "s3cret")
    with pytest.raises(ValueError):
        store.add("*", "x")
    listing = subprocess.run(
        [sys.executable, "-m", "rexec.cli", "users", "list", "--file", str(users)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "alice" in listing.stdout


MD5, SHA1 = hashlib.md5(b"md5pw").hexdigest(), hashlib.sha1(b"sha1pw").hexdigest()
RSERVE_FILE = f"""# an Rserve password file
bob secret
@carol/1000,1000 two words\t
dave ${MD5}
erin\t${SHA1}
* anything goes

frank\t\tlast
bob second
"""


@pytest.fixture
def rserve_users(tmp_path):
    path = tmp_path / "pwd"
    path.write_text(RSERVE_FILE)
    path.chmod(0o600)
    return path


def test_rserve_password_file_is_read_as_rserve_reads_it(rserve_users) -> None:
    store = UsersFile(rserve_users, plaintext=True)
    assert store.names() == ["bob", "carol", "dave", "erin", "frank"]
    accepted = [
        ("bob", "secret"),
        ("bob", "second"),  # entries of one user are tried in order
        ("carol", "two words\t"),  # '@' and '/uid,gid' are not part of the name
        ("dave", "md5pw"),  # '$' + 32 hex digits: the MD5 of the password
        ("erin", "sha1pw"),  # '$' + 40: the SHA-1
        ("frank", "last"),
    ]
    refused = [
        ("bob", "wrong"),
        ("carol", "two words"),  # the password is the rest of the line, blanks too
        ("dave", "$" + hashlib.md5(b"md5pw").hexdigest()),
        ("*", "anything goes"),  # no wildcard user
        ("nobody", "anything goes"),  # and '*' lets nobody else in either
        ("", ""),  # a blank line is not an empty user
        ("bob", "*0"),  # libxcrypt's failure token (Rserve 1.8-11 accepts it, see below)
    ]
    assert [store.verify(*login) for login in accepted] == [True] * len(accepted)
    assert [store.verify(*login) for login in refused] == [False] * len(refused)


def test_clear_text_entries_are_refused_without_plaintext(rserve_users, caplog) -> None:
    store = UsersFile(rserve_users)
    with caplog.at_level(logging.ERROR, "rexec.compute"):
        assert not store.verify("bob", "secret")
    assert "stored in clear: refused" in caplog.text and "'plaintext enable'" in caplog.text
    problems = store.problems()
    assert any("auth.plaintext = true" in p for p in problems)
    assert any("wildcard entry '*'" in p for p in problems)


def test_users_add_keeps_an_rserve_file_and_replaces_all_entries_of_the_user(rserve_users):
    store = UsersFile(rserve_users, plaintext=True)
    store.add("bob", "new")
    text = rserve_users.read_text()
    assert text.startswith("# an Rserve password file\n")
    assert "bob secret" not in text and "bob second" not in text and "\nbob\t$argon2" in text
    assert store.verify("bob", "new") and not store.verify("bob", "secret")
    assert store.verify("carol", "two words\t")  # the others are untouched
    assert store.remove("carol") and not store.verify("carol", "two words\t")
    assert not store.remove("carol")
    for bad in ("@x", "#x", "a/b", "a b", "*"):
        with pytest.raises(ValueError):
            store.add(bad, "pw")


def test_des_crypt_is_libcrypt_traditional_des() -> None:
    assert crypt_available()
    # the same as the Java client's own DES crypt (REngine's jcrypt.crypt(salt, password))
    vectors = {
        ("ab", b"secret"): "abNANd1rDfiNc",
        ("aa", b"test"): "aaqPiZY5xR5l.",
        ("Kx", b"pass word"): "Kx7HxB315plLs",
        ("./", b""): "./Una9Fi.seRo",
        ("zZ", b"12345678901"): "zZYQyo/kK5WTQ",
    }
    assert {key: des_crypt(key[1], key[0]) for key in vectors} == vectors
    assert des_crypt(b"secret12", "ab") == des_crypt(b"secret123456", "ab")  # 8 characters
    # Rserve <= 1.8-11 passed the salt with the space that follows it in the ID string;
    # libxcrypt refuses it, and so does rexec: never a failure token to compare with
    assert des_crypt(b"secret", "ab ") is None
    assert des_crypt(b"secret", "a!") is None
    assert des_crypt(b"sec\0ret", "ab") is None


def test_des_crypt_is_thread_safe() -> None:
    expected = {salt: des_crypt(b"pw" + salt.encode(), salt) for salt in ("ab", "cd", "ef", "gh")}
    wrong: list[str] = []

    def work(salt: str) -> None:
        for _ in range(300):
            if des_crypt(b"pw" + salt.encode(), salt) != expected[salt]:
                wrong.append(salt)

    threads = [threading.Thread(target=work, args=(salt,)) for salt in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def logins(**settings) -> Logins:
    return Logins(Config(settings))


def test_greeting_offers_crypt_only_where_it_can_be_checked(users, rserve_users) -> None:
    # rexec's argon2 file: plain text only, whatever auth.plaintext says
    for plaintext in (False, True):
        greeting, salt = logins(
            **{"auth.required": True, "auth.users_file": str(users), "auth.plaintext": plaintext}
        ).greeting()
        assert (greeting, salt) == (b"Rsrv0103QAP1\r\n\r\nARpt----------\r\n", None)
    # Rserve's clear-text file without plaintext: refused anyway, so plain text only
    greeting, salt = logins(
        **{"auth.required": True, "auth.users_file": str(rserve_users)}
    ).greeting()
    assert salt is None and greeting.endswith(b"ARpt----------\r\n")
    # with plaintext: Rserve's auth required + plaintext enable string, a fresh salt each time
    compat = logins(
        **{"auth.required": True, "auth.users_file": str(rserve_users), "auth.plaintext": True}
    )
    salts = set()
    for _ in range(40):
        greeting, salt = compat.greeting()
        assert salt is not None and len(salt) == 2 and set(salt) <= set(SALT_ALPHABET)
        assert greeting == b"Rsrv0103QAP1\r\n\r\nARucK" + salt.encode() + b" ARpt--\r\n"
        assert parse_id_string(greeting).attributes == ("ARuc", "K" + salt, "ARpt")
        salts.add(salt)
    assert len(salts) > 30
    # no authentication: no attributes, even with a users file
    assert logins(**{"auth.users_file": str(rserve_users), "auth.plaintext": True}).greeting() == (
        b"Rsrv0103QAP1\r\n\r\n--------------\r\n",
        None,
    )


def test_greeting_with_tls_switch_fills_the_last_slot(rserve_users, tmp_path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-")  # only looked at to decide the ID string here
    settings = {
        "auth.required": True,
        "auth.users_file": str(rserve_users),
        "auth.plaintext": True,
        "tls.switch": True,
        "tls.cert": str(cert),
    }
    greeting, salt = logins(**settings).greeting()
    assert greeting == b"Rsrv0103QAP1\r\n\r\nARucK" + salt.encode() + b" ARptTLS\n"


def test_check_takes_plain_and_crypt_logins_as_rserve_does(rserve_users, users) -> None:
    compat = logins(
        **{"auth.required": True, "auth.users_file": str(rserve_users), "auth.plaintext": True}
    )
    _, salt = compat.greeting()
    assert salt is not None
    other = "zz" if salt != "zz" else "yy"

    async def run() -> list[bool]:
        return [
            await compat.check("bob", "secret", "10.0.0.1", salt=salt),
            await compat.check("bob", des_crypt(b"secret", salt), "10.0.0.1", salt=salt),
            await compat.check("bob", des_crypt(b"second", salt), "10.0.0.1", salt=salt),
            await compat.check("bob", des_crypt(b"secret", other), "10.0.0.1", salt=salt),
            await compat.check("bob", des_crypt(b"secret", salt), "10.0.0.1"),  # no salt given
            await compat.check("bob", "*0", "10.0.0.1", salt=salt),
            # an MD5 entry crypts the stored text, as in Rserve: the password never matches
            await compat.check("dave", des_crypt(b"md5pw", salt), "10.0.0.1", salt=salt),
        ]

    assert asyncio.run(run()) == [True, True, True, False, False, False, False]
    # argon2 entries: a crypt()ed password cannot be checked, the plain one can
    strict = logins(
        **{"auth.required": True, "auth.users_file": str(users), "auth.plaintext": True}
    )

    async def argon2() -> list[bool]:
        return [
            await strict.check("alice", des_crypt(b"s3cret", "ab"), "10.0.0.2", salt="ab"),
            await strict.check("alice", "s3cret", "10.0.0.2", salt="ab"),
        ]

    assert asyncio.run(argon2()) == [False, True]


def login(client: RawClient, user: str, password: str):
    client.send(Cmd.LOGIN, string_param(f"{user}\n{password}"))
    return client.reply()


def test_required_login(rexec_factory, users) -> None:
    server = rexec_factory(
        **{"auth.required": True, "auth.users_file": str(users), "pool.initial": 1}
    )
    with RawClient(server.port) as c:
        assert c.id_string == b"Rsrv0103QAP1\r\n\r\nARpt----------\r\n"
        r = c.eval("1")  # nothing before login
        assert r.status == Err.AUTH_FAILED
        assert c.closed_by_server()
    with RawClient(server.port) as c:
        assert login(c, "alice", "wrong").status == Err.AUTH_FAILED
        assert c.closed_by_server()
    with RawClient(server.port) as c:
        assert login(c, "alice", "s3cret").ok
        assert c.eval("1L").value() == 1
        assert login(c, "alice", "s3cret").status == Err.INV_CMD  # second login, as Rserve


def test_authenticated_user_may_shut_the_server_down(rexec_factory, users) -> None:
    server = rexec_factory(
        **{"auth.required": True, "auth.users_file": str(users), "pool.initial": 1}
    )
    with RawClient(server.port) as c:
        assert login(c, "alice", "s3cret").ok
        c.send(Cmd.SHUTDOWN)
        assert c.reply().ok
    deadline = time.monotonic() + 20
    while server.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.process.returncode == 0
    assert "asked the server to shut down" in server.log_text()


def test_optional_login_without_users_file_accepts_anyone(rexec_server) -> None:
    with RawClient(rexec_server.port) as c:
        assert login(c, "anyone", "anything").ok
        assert c.eval("1L").value() == 1


def test_clear_text_passwords_in_the_users_file_need_the_compat_switch(rexec_factory, tmp_path):
    users = tmp_path / "users"
    users.write_text("bob secret\n")  # an Rserve-style entry
    users.chmod(0o600)
    strict = rexec_factory(**{"auth.required": True, "auth.users_file": str(users)})
    with RawClient(strict.port) as c:
        assert login(c, "bob", "secret").status == Err.AUTH_FAILED
    assert "stored in clear: refused" in strict.log_text()
    compat = rexec_factory(
        **{"auth.required": True, "auth.users_file": str(users), "auth.plaintext": True}
    )
    with RawClient(compat.port) as c:
        assert login(c, "bob", "secret").ok


def test_session_log_lines_are_structured(rexec_factory) -> None:
    server = rexec_factory(**{"log.commands": True, "pool.initial": 1})
    with RawClient(server.port) as c:
        c.eval("1L")
        c.eval("stop('x')")
    expected = ("outcome=error 0x7f", "event=command cmd=0x3 bytes=16")
    time_limit = time.monotonic() + 10
    while time.monotonic() < time_limit:
        text = server.log_text()
        if all(part in text for part in expected) and text.count("event=ended") >= 2:
            break
        time.sleep(0.1)
    assert "event=accepted shell=" in text and "client=127.0.0.1:" in text
    assert "event=command cmd=0x3 bytes=" in text and "outcome=ok" in text
    assert "outcome=error 0x7f" in text
    assert "event=ended outcome=closed-by-client duration=" in text


def test_a_verified_password_is_remembered_not_its_hash_check(users, monkeypatch) -> None:
    """With ``remember`` a repeated login skips argon2 (a web node opens many
    connections); a wrong password, or the right one after a password change, never
    rides on the memory."""
    from rexec.compute.supervisor import users as users_module

    store = UsersFile(users, remember=60.0)
    assert store.verify("alice", "s3cret")
    checks = []

    class Counting:  # argon2's hasher, counting its verifications
        def __init__(self, real):
            self.real = real

        def verify(self, *args):
            checks.append(args)
            return self.real.verify(*args)

        def hash(self, *args):
            return self.real.hash(*args)

    monkeypatch.setattr(users_module, "_hasher", Counting(users_module._hasher))
    for _ in range(5):
        assert store.verify("alice", "s3cret")
    assert checks == []  # remembered: no argon2 run
    assert not store.verify("alice", "wrong")
    assert len(checks) == 1  # a wrong password is checked by argon2 (and fails)
    store.add("alice", "n3w-secret")  # a new hash: the old password is forgotten
    assert not store.verify("alice", "s3cret")
    assert store.verify("alice", "n3w-secret")
    forgetful = UsersFile(users, remember=0.0)
    assert forgetful.verify("alice", "n3w-secret") and not forgetful._verified
