"""A workspace's own folders: a home per researcher *and* project, and the project's shared folder.

Under ``<data dir>/projects/<code>/`` (``root:tre-p-<code>``, 0750, so only the project's members pass):

* ``homes/`` (root, 0711) and in it ``<unix user>/`` (the researcher, 0700): mounted over the researcher's
  home directory inside that project's workspaces only (:mod:`tre_platform.hub.sandbox`), so nothing a
  researcher leaves in ``~`` for one project is visible from their workspace for another.
* ``shared/`` (``root:tre-p-<code>``, 2770: group-writable, setgid so new files stay in the project's group):
  the team's code and intermediate files, linked as ``~/shared`` in every home of the project.

A new home gets the starter notebooks (``notebooks_templates/``) whose datasets the project holds (each
notebook lists them in its ``metadata.tre.datasets``). At project close the enforcement code calls
:func:`close_project_folders`, which archives both (or removes them).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pwd
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path

from tre_platform.settings import REPO_ROOT, get_settings
from tre_platform.views import storage

log = logging.getLogger(__name__)

TEMPLATES_DIR = REPO_ROOT / "notebooks_templates"
#: The folder in a home where the starter notebooks are copied.
TEMPLATES_FOLDER = "starter-notebooks"


def project_dir(code: str) -> Path:
    return get_settings().resolved_data_dir / "projects" / code


def project_home(code: str, unix_user: str) -> Path:
    """The home of ``unix_user`` in project ``code`` (not created here)."""
    return project_dir(code) / "homes" / unix_user


def shared_folder(code: str) -> Path:
    """The project's shared folder (not created here)."""
    return project_dir(code) / "shared"


def fitting_templates(datasets: Iterable[str], templates_dir: Path = TEMPLATES_DIR) -> list[Path]:
    """The starter notebooks every dataset of which the project holds."""
    held = set(datasets)
    fitting = []
    for path in sorted(templates_dir.glob("*.ipynb")):
        try:
            wanted = json.loads(path.read_text())["metadata"].get("tre", {}).get("datasets", [])
        except (OSError, ValueError, KeyError):
            continue
        if wanted and set(wanted) <= held:
            fitting.append(path)
    return fitting


def prepare_project_folders(code: str, unix_user: str, datasets: Iterable[str]) -> Path:
    """Create (if missing) the researcher's home in the project and the shared folder; return the home.

    A new home gets the fitting starter notebooks and a ``shared`` link. Needs root (ownership).
    """
    storage.require_root("creating a workspace's home and the project's shared folder")
    entry = pwd.getpwnam(unix_user)
    gid = storage.ensure_group(storage.project_group(code))
    base = project_dir(code)
    base.mkdir(parents=True, exist_ok=True)
    homes = base / "homes"
    homes.mkdir(mode=0o711, exist_ok=True)
    os.chown(homes, 0, 0)
    homes.chmod(0o711)
    shared = shared_folder(code)
    shared.mkdir(exist_ok=True)
    os.chown(shared, 0, gid)
    shared.chmod(0o2770)
    home = project_home(code, unix_user)
    if not home.exists():
        home.mkdir(mode=0o700)
        templates = home / TEMPLATES_FOLDER
        templates.mkdir()
        for notebook in fitting_templates(datasets):
            shutil.copyfile(notebook, templates / notebook.name)
        (home / "shared").symlink_to(shared)
        for dirpath, dirnames, filenames in os.walk(home):
            for name in [*dirnames, *filenames, "."]:
                os.chown(Path(dirpath) / name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        log.info("created the home of %s in %s", unix_user, code)
    home.chmod(0o700)
    return home


def close_project_folders(code: str, *, archive: bool = True) -> Path | None:
    """At project close: archive (or remove) every home of the project and its shared folder.

    The archive is ``<data dir>/archive/workspaces/<code>-<UTC timestamp>.tar.gz`` (root only, 0600);
    returns its path, or None when there was nothing to keep or ``archive`` is False. Idempotent: a
    second call finds nothing. Stop the project's servers first (their mounts hold the homes).
    """
    base = project_dir(code)
    parts = [p for p in (base / "homes", base / "shared") if p.exists()]
    if not parts:
        return None
    target: Path | None = None
    if archive:
        folder = get_settings().ensure_data_dir() / "archive" / "workspaces"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = folder / f"{code}-{stamp}.tar.gz"
        with tarfile.open(target, "w:gz") as tar:
            for part in parts:
                tar.add(part, arcname=f"{code}/{part.name}")
        target.chmod(0o600)
    for part in parts:
        storage.remove_tree(part)
    log.info("closed the workspace folders of %s%s", code, f" (archived to {target})" if target else "")
    return target
