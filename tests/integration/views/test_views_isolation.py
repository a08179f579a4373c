"""Storage isolation, tried for real: as a researcher's Unix user, every read outside their project fails.

Runs as root (it creates Unix users and groups with useradd/groupadd, and removes them afterwards).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from factories import SYSTEM
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld

from tre_platform.views import build_views
from tre_platform.views.storage import NotRootError, require_root, unix_username

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates Unix users: needs root")


def _as(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, check=False)


def _assert_denied(user: str, path: Path) -> None:
    result = _as(user, "cat", str(path))
    assert result.returncode != 0, f"{user} could read {path}"
    assert "Permission denied" in result.stderr, result.stderr


@pytest.fixture
def built(session: Session, wworld: WorkspaceWorld, data_dir: Path) -> WorkspaceWorld:
    # Zones the pipelines own, populated before the build so that its hardening is what closes them.
    for zone in ("linkage/indexes/demographic", "landing/hes/d1"):
        (data_dir / zone).mkdir(parents=True, exist_ok=True)
        (data_dir / zone / "data.parquet").write_bytes(b"PAR1 secret")
    build_views(session, SYSTEM, wworld.p1.code)
    build_views(session, SYSTEM, wworld.p2.code)
    session.commit()
    return wworld


def test_a_researcher_reads_their_own_projects_views(built: WorkspaceWorld, data_dir: Path) -> None:
    alice = unix_username(built.alice.username)
    view = data_dir / "projects" / built.p1.code / "views" / built.hes.name
    listing = _as(alice, "ls", str(view) + "/")
    assert listing.returncode == 0, listing.stderr
    assert "part-00000.parquet" in listing.stdout
    program = "import json,sys; m=json.load(open(sys.argv[1])); print(m['row_count'])"
    result = _as(alice, "/usr/bin/python3.11", "-c", program, str(view / "_manifest.json"))
    assert result.stdout.strip() == "200", result.stderr


def test_a_researcher_cannot_read_another_projects_views(built: WorkspaceWorld, data_dir: Path) -> None:
    alice = unix_username(built.alice.username)
    other = data_dir / "projects" / built.p2.code / "views" / built.hes.name
    _assert_denied(alice, other / "_manifest.json")
    _assert_denied(alice, other / "part-00000.parquet")
    listing = _as(alice, "ls", str(data_dir / "projects" / built.p2.code))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr


@pytest.mark.parametrize(
    "relative",
    [
        "research/{hes}/v1/part-00000.parquet",
        "linkage/indexes/demographic/data.parquet",
        "landing/hes/d1/data.parquet",
        "keys/master-v000001.json",
    ],
)
def test_a_researcher_cannot_read_the_other_zones(
    built: WorkspaceWorld, data_dir: Path, relative: str
) -> None:
    alice = unix_username(built.alice.username)
    _assert_denied(alice, data_dir / relative.format(hes=built.hes.name))


def test_a_researcher_cannot_list_the_data_directory(built: WorkspaceWorld, data_dir: Path) -> None:
    result = _as(unix_username(built.bob.username), "ls", str(data_dir))
    assert result.returncode != 0 and "Permission denied" in result.stderr


def test_a_researchers_python_cannot_open_another_projects_view(
    built: WorkspaceWorld, data_dir: Path
) -> None:
    bob = unix_username(built.bob.username)
    target = data_dir / "projects" / built.p1.code / "views" / built.lfs.name / "part-00000.parquet"
    result = _as(bob, "/usr/bin/python3.11", "-c", "import sys; open(sys.argv[1], 'rb').read()", str(target))
    assert result.returncode != 0
    assert "PermissionError" in result.stderr


def test_code_that_needs_root_says_so_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="needs root"):
        require_root("creating the Unix group tre-p-x")
