"""Which account R shells run as. Started as root, rexec never leaves R running as root:
shells switch to ``shell.user`` (default: the ``rexec`` system account) unless
``shell.allow_root`` (``--allow-root``) says otherwise. Started as anyone else, shells
run as that user."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from rexec.config import Config

DEFAULT_ACCOUNT = "rexec"
CREATE_ACCOUNT = (
    "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rexec"
)

#: Modules a worker needs after it lost access to the interpreter's files (a Python
#: under /root, say): imported while still privileged. Importing runs no R: R itself is
#: initialised only after the switch.
PRELOAD = (
    "encodings.latin_1",
    "encodings.utf_8",
    "encodings.ascii",
    "encodings.idna",
    "ctypes",
    "time",
    "tempfile",
    "traceback",
    "linecache",
    "importlib.readers",
    "importlib.resources.readers",
    "rpy2.rinterface",
    "rpy2.rinterface_lib.callbacks",
    "rpy2.rinterface_lib.embedded",
    "rpy2.situation",
    "rexec.rshell.shell",
    "rexec.rshell.convert",
    "rexec.rshell.embedded",
    "rexec.rshell.blas",
)


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


def become(identity: Identity, home: str) -> None:
    """Switch to ``identity`` for good (real, effective and saved ids, no groups)."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    os.setgroups([])
    os.setgid(identity.gid)
    os.setuid(identity.uid)  # as root this sets the real, effective and saved uid
    if os.getuid() != identity.uid or os.geteuid() != identity.uid:
        raise IdentityError("could not drop root")
    os.chdir(home)
    os.environ.update(USER=identity.name, LOGNAME=identity.name, HOME=home)


def shell_root(config: Config) -> Path:
    """Where shells make their directories (``conn<pid>``, ``tmp<pid>``): a directory of
    the shell account's own inside ``session.workdir``, so the template, which runs as
    that account, can make them, while the rest of ``session.workdir`` (the status
    socket) stays the server's."""
    return config.workdir / "shells"


def prepare_shell_root(config: Config) -> Path:
    """Make :func:`shell_root` (mode 0700), owned by the shell account."""
    root = shell_root(config)
    config.workdir.mkdir(parents=True, exist_ok=True)
    root.mkdir(mode=0o700, exist_ok=True)
    identity = shell_identity(config)
    if identity is not None:
        if root.is_symlink():
            raise IdentityError(f"{root} is a symbolic link")
        os.chown(root, identity.uid, identity.gid)
    os.chmod(root, 0o700)
    return root
