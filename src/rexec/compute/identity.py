"""Which account R shells run as. Started as root, rexec never leaves R running as root:
shells switch to ``shell.user`` (default: the ``rexec`` system account) unless
``shell.allow_root`` (``--allow-root``) says otherwise. Started as anyone else, shells
run as that user."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from rexec.config import Config

DEFAULT_ACCOUNT = "rexec"
CREATE_ACCOUNT = (
    "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rexec"
)

#: Modules a shell may need after it lost access to the interpreter's files (a Python
#: under /root, say): imported while still privileged.
PRELOAD = ("encodings.latin_1", "encodings.utf_8", "encodings.ascii", "encodings.idna")


class IdentityError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    uid: int
    gid: int


def shell_identity(config: Config) -> Identity | None:
    """The account to switch to, or None to stay as we are."""
    user, group = config["shell.user"], config["shell.group"]
    if os.geteuid() != 0:
        if user and user != pwd.getpwuid(os.geteuid()).pw_name:
            raise IdentityError(f"shell.user = {user!r} needs the server to start as root")
        return None
    if not user and config["shell.allow_root"]:
        return None
    name = user or DEFAULT_ACCOUNT
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        hint = f" (create it with: {CREATE_ACCOUNT})" if name == DEFAULT_ACCOUNT else ""
        raise IdentityError(f"no account {name!r} to run R shells as{hint}") from None
    if account.pw_uid == 0 and not config["shell.allow_root"]:
        raise IdentityError("R shells would run as root: pass --allow-root if you mean it")
    gid = grp.getgrnam(group).gr_gid if group else account.pw_gid
    return Identity(name, account.pw_uid, gid)


def become(identity: Identity, own: list[str]) -> None:
    """Hand ``own`` (this shell's directories) to ``identity`` and switch to it for good."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    for path in own:
        if path:
            os.chown(path, identity.uid, identity.gid)
    os.setgroups([])
    os.setgid(identity.gid)
    os.setuid(identity.uid)  # as root this sets the real, effective and saved uid
    os.environ.update(USER=identity.name, LOGNAME=identity.name, HOME=os.getcwd())
