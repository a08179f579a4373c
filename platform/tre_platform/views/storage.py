"""Storage isolation on one host: Unix users, per-project groups and the modes of the data directory.

The rule (docs/adr/0005-workspace-isolation.md): a researcher's server runs as the researcher's own Unix
user, which is a member of ``tre-p-<project code>`` for exactly the projects the policy engine lets them
use. ``projects/<code>/`` is ``root:tre-p-<code>`` mode 0750, views inside are read-only (0440 files,
0550 directories), and every other part of the data directory (landing, linkage, research, keys,
releases, the database) is closed to everyone but root. The data directory itself is 0711: researchers
may pass through it to their project's directory but cannot list it.

Creating users and groups and changing ownership needs root: those functions say so with
:class:`NotRootError`. ``StorageMode.insecure_single_user`` exists only for a laptop without root, where
everything runs as one user and NOTHING separates projects; it is never the default.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tre_platform.errors import TreError
from tre_platform.settings import StorageMode

__all__ = ["StorageMode"]

log = logging.getLogger(__name__)

GROUP_PREFIX = "tre-p-"
USER_PREFIX = "tre-u-"
#: Top-level entries of the data directory a researcher may pass through (never list or read).
TRAVERSABLE = frozenset({"projects"})
_UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

INSECURE_BANNER = (
    "INSECURE SINGLE-USER DEVELOPMENT MODE: every workspace runs as the same Unix user and nothing "
    "separates one project's data from another's. Never use this with real data."
)


class NotRootError(TreError):
    """An operation that changes Unix users, groups or ownership was run without root."""

    status_code = 500
    code = "not_root"


class UnixAccountError(TreError):
    """A Unix user or group could not be created or changed; the message carries the tool's output."""

    status_code = 500
    code = "unix_account"


def is_root() -> bool:
    return os.geteuid() == 0


def require_root(doing: str) -> None:
    """Raise :class:`NotRootError` unless running as root, saying what needed it and what to do."""
    if not is_root():
        raise NotRootError(
            f"{doing} needs root: workspaces run as per-researcher Unix users in per-project groups, "
            "which only root can create and assign. Run this command as root (e.g. with sudo). On a "
            "laptop with synthetic data only, TRE_STORAGE_MODE=insecure-single-user skips the separation "
            "(INSECURE: nothing then separates projects)"
        )


# Names ----------------------------------------------------------------------------------------------


def project_group(code: str) -> str:
    """The Unix group of a project: ``tre-p-`` and the project code in lower case."""
    name = GROUP_PREFIX + re.sub(r"[^a-z0-9_-]", "-", code.lower())
    return check_unix_name(name, "project group")


def unix_username(username: str, configured: str | None = None) -> str:
    """The Unix account a researcher's server runs as: ``User.unix_username`` or ``tre-u-<username>``."""
    name = configured or USER_PREFIX + re.sub(r"[^a-z0-9_-]", "-", username.lower())
    return check_unix_name(name, "Unix username")


def check_unix_name(name: str, what: str) -> str:
    if not _UNIX_NAME.match(name):
        raise UnixAccountError(
            f"{what} {name!r} is not a valid Unix name (lower case letters, digits, '-' and '_', at most "
            "32 characters, not starting with a digit); set a shorter unix_username for the user"
        )
    return name


# Accounts -------------------------------------------------------------------------------------------


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UnixAccountError(
            f"`{' '.join(argv)}` failed with exit code {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()}"
        )


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_group(name: str) -> int:
    """Create the group if missing (``groupadd --system``); return its gid. Needs root."""
    check_unix_name(name, "group")
    if not group_exists(name):
        require_root(f"creating the Unix group {name}")
        _run(["groupadd", "--system", name])
        log.info("created Unix group %s", name)
    return grp.getgrnam(name).gr_gid


def ensure_user(name: str, *, comment: str = "") -> int:
    """Create a researcher's Unix user if missing (own group, private home, bash); return its uid.

    The account has no password: nobody logs in as it directly, the hub starts processes as it.
    """
    check_unix_name(name, "user")
    if not user_exists(name):
        require_root(f"creating the Unix user {name}")
        argv = ["useradd", "--create-home", "--user-group", "--shell", "/bin/bash"]
        if comment:
            argv += ["--comment", re.sub(r"[:\n]", " ", comment)[:100]]
        _run([*argv, name])
        log.info("created Unix user %s", name)
    entry = pwd.getpwnam(name)
    home = Path(entry.pw_dir)
    if home.is_dir() and stat.S_IMODE(home.stat().st_mode) != 0o700 and is_root():
        # Researchers of different projects must not read each other's notebooks and outputs.
        home.chmod(0o700)
    return entry.pw_uid


def group_members(group: str) -> set[str]:
    try:
        return set(grp.getgrnam(group).gr_mem)
    except KeyError:
        return set()


def set_group_members(group: str, wanted: Iterable[str]) -> tuple[set[str], set[str]]:
    """Make ``wanted`` exactly the (supplementary) members of ``group``; return (added, removed).

    Running processes keep the groups they started with: stopping a revoked user's server is the
    enforcer's job (:func:`tre_platform.views.enforce.enforce_access`).
    """
    wanted_set = set(wanted)
    current = group_members(group)
    added, removed = wanted_set - current, current - wanted_set
    if added or removed:
        require_root(f"changing the members of {group}")
    for name in sorted(added):
        _run(["gpasswd", "--add", name, group])
    for name in sorted(removed):
        _run(["gpasswd", "--delete", name, group])
    return added, removed


def delete_user(name: str) -> None:
    """Remove a Unix user and its home (tests and decommissioning). Needs root."""
    if user_exists(name):
        require_root(f"deleting the Unix user {name}")
        _run(["userdel", "--remove", name])


def delete_group(name: str) -> None:
    if group_exists(name):
        require_root(f"deleting the Unix group {name}")
        _run(["groupdel", name])


# Modes ---------------------------------------------------------------------------------------------


def harden_data_dir(data_dir: Path, mode: StorageMode = StorageMode.unix) -> None:
    """Close every part of the data directory to researchers except the way to ``projects/``.

    The data directory and ``projects/`` become 0711 (pass through, no listing); every other top-level
    entry (landing, linkage, research, keys, releases, the SQLite database and its journals, secrets)
    loses all group and other permissions.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if mode is StorageMode.insecure_single_user:
        log.warning(INSECURE_BANNER)
        return
    data_dir.chmod(0o711)
    (data_dir / "projects").mkdir(exist_ok=True)
    for entry in data_dir.iterdir():
        if entry.name in TRAVERSABLE:
            entry.chmod(0o711)
            continue
        if entry.is_symlink():
            continue
        current = stat.S_IMODE(entry.stat().st_mode)
        entry.chmod(current & 0o700)


def secure_project_dir(data_dir: Path, code: str, mode: StorageMode = StorageMode.unix) -> Path:
    """Create ``projects/<code>/views`` owned by root:tre-p-<code>, 0750; return the views directory."""
    project_dir = data_dir / "projects" / code
    views = project_dir / "views"
    views.mkdir(parents=True, exist_ok=True)
    if mode is StorageMode.insecure_single_user:
        return views
    gid = ensure_group(project_group(code))
    for path in (project_dir, views):
        os.chown(path, 0, gid)
        path.chmod(0o750)
    return views


def seal_tree(root: Path, gid: int | None) -> None:
    """Make a built view read-only for the project group: files 0440, directories 0550, group ``gid``."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if gid is not None:
                os.chown(path, 0, gid)
            path.chmod(0o440)
        for name in dirnames:
            path = Path(dirpath) / name
            if gid is not None:
                os.chown(path, 0, gid)
            path.chmod(0o550)
    if gid is not None:
        os.chown(root, 0, gid)
    root.chmod(0o550)


def remove_tree(path: Path) -> None:
    """Remove a directory tree that :func:`seal_tree` made read-only."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    for dirpath, _dirnames, _filenames in os.walk(path):
        Path(dirpath).chmod(0o700)
    shutil.rmtree(path)
