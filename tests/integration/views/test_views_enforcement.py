"""Enforcement after a change: each trigger takes away exactly what it withdraws, and nothing else.

Each test starts from three approved projects with built views and running servers - p1 (alice; hes and
lfs), p2 (bob; hes and lfs), p3 (bob, with alice as a member; hes only) - makes one change through the
REST API (with enforcement on, as in production), and checks both sides: what lost access is gone
(view files, server, Unix group membership), and every bystander view keeps its files and the same build,
every bystander server keeps running. Time-based triggers run the scheduler's job under a frozen clock,
with no API call in between.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from factories import SYSTEM, make_agreement, make_token, make_user
from fastapi.testclient import TestClient
from recording_hub import RecordingHub
from sqlalchemy import select
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld

from tre_platform.actor import Actor
from tre_platform.api.app import create_app
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import Project
from tre_platform.api.projects.schemas import DatasetRequest, MemberAdd, ProjectCreate
from tre_platform.api.users.models import User
from tre_platform.clock import clock
from tre_platform.scheduler import enforce_expiries
from tre_platform.settings import get_settings
from tre_platform.views import build_views
from tre_platform.views.storage import group_members, project_group, unix_username

API = "/api/v1"


@dataclass
class Scene:
    world: WorkspaceWorld
    p3: Project
    data_dir: Path
    client: TestClient

    def call(self, session: Session, user: User, method: str, path: str, **body: str) -> None:
        """One REST call as ``user``; it must succeed."""
        token = make_token(session, user)
        session.commit()
        response = self.client.request(
            method, f"{API}{path}", json=body or None, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code < 300, response.text
        session.expire_all()

    def views(self) -> dict[tuple[str, str], str]:
        """(project code, view) -> the build its symlink points at."""
        out = {}
        for project in (self.world.p1, self.world.p2, self.p3):
            target = self.data_dir / "projects" / project.code / "views"
            for entry in target.iterdir():
                if entry.is_symlink():
                    out[(project.code, entry.name)] = os.readlink(entry)
        return out


@pytest.fixture
def scene(
    session: Session, wworld: WorkspaceWorld, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scene]:
    lead, member = wworld.bob, wworld.alice
    actor = Actor.of(lead)
    p3 = projects.create_project(
        session,
        actor,
        ProjectCreate(
            title="Member study",
            lay_summary="A study of outcomes that is in the public interest.",
            purpose="policy_evidence",
            legal_gateway="dea",
            start_date=clock.today(),
            end_date=clock.today() + dt.timedelta(days=365),
        ),
    )
    projects.request_dataset(session, actor, p3.id, DatasetRequest(dataset_id=wworld.hes.id, columns=["age"]))
    projects.add_member(session, actor, p3.id, MemberAdd(user_id=member.id))
    projects.transition(session, actor, p3.id, "submit", "please")
    projects.transition(session, SYSTEM, p3.id, "approve", "fine")
    for project in (wworld.p1, wworld.p2, p3):
        build_views(session, SYSTEM, project.code)
    session.commit()
    RecordingHub.reset(
        {
            (wworld.alice.username, wworld.p1.code),
            (wworld.bob.username, wworld.p2.code),
            (wworld.bob.username, p3.code),
            (wworld.alice.username, p3.code),
        }
    )
    monkeypatch.setenv("TRE_ENFORCE_ON_CHANGE", "true")
    monkeypatch.setenv("TRE_WORKSPACE_CONTROL_CLASS", "recording_hub:RecordingHub")
    get_settings.cache_clear()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield Scene(wworld, p3, data_dir, client)
    get_settings.cache_clear()


def _owner_of(session: Session, org_id: str) -> User:
    return make_user(session, roles=["data_owner"], organisation_id=org_id)


def _admin(session: Session) -> User:
    return make_user(session, roles=["admin"])


def _tomorrow() -> dt.datetime:
    return clock.now() + dt.timedelta(days=1)


def revoke_lfs_agreement(session: Session, s: Scene) -> None:
    owner = _owner_of(session, s.world.lfs.owner_org_id)
    s.call(session, owner, "POST", f"/agreements/{s.world.lfs_agreement.id}/revoke", reason="withdrawn")


def revoke_unrelated_agreement(session: Session, s: Scene) -> None:
    """The live bug: a data owner revokes an agreement just granted, which nothing relies on alone."""
    owner = _owner_of(session, s.world.lfs.owner_org_id)
    spare = make_agreement(session, owner=s.world.lfs.owner)
    session.commit()
    s.call(session, owner, "POST", f"/agreements/{spare.id}/revoke", reason="granted by mistake")


def expire_lfs_agreement(session: Session, s: Scene) -> None:
    s.world.lfs_agreement.valid_to = clock.today()
    session.commit()
    with clock.frozen(_tomorrow()):
        enforce_expiries()


def revoke_alice_accreditation(session: Session, s: Scene) -> None:
    alice = s.world.alice
    path = f"/users/{alice.id}/accreditations/{alice.accreditations[0].id}/revoke"
    s.call(session, _admin(session), "POST", path, reason="lapsed")


def expire_alice_accreditation(session: Session, s: Scene) -> None:
    s.world.alice.accreditations[0].expires_on = clock.today()
    session.commit()
    with clock.frozen(_tomorrow()):
        enforce_expiries()


def remove_alice_from_p3(session: Session, s: Scene) -> None:
    s.call(session, s.world.bob, "DELETE", f"/projects/{s.p3.id}/members/{s.world.alice.id}")


def close_p2(session: Session, s: Scene) -> None:
    s.call(
        session,
        _admin(session),
        "POST",
        f"/projects/{s.world.p2.id}/transitions",
        action="close",
        comment="done",
    )


def p2_end_date_passes(session: Session, s: Scene) -> None:
    s.world.p2.end_date = clock.today()
    session.commit()
    with clock.frozen(_tomorrow()):
        enforce_expiries()


@dataclass(frozen=True)
class Expect:
    views_removed: Callable[[Scene], set[tuple[str, str]]]
    servers_stopped: Callable[[Scene], set[tuple[str, str]]]


def _lfs_views(s: Scene) -> set[tuple[str, str]]:
    return {(s.world.p1.code, s.world.lfs.name), (s.world.p2.code, s.world.lfs.name)}


def _p2_views(s: Scene) -> set[tuple[str, str]]:
    return {(s.world.p2.code, s.world.hes.name), (s.world.p2.code, s.world.lfs.name)}


def _none(_s: Scene) -> set[tuple[str, str]]:
    return set()


TRIGGERS: dict[str, tuple[Callable[[Session, Scene], None], Expect]] = {
    "agreement_revoked": (
        revoke_lfs_agreement,
        Expect(
            _lfs_views,
            lambda s: {(s.world.alice.username, s.world.p1.code), (s.world.bob.username, s.world.p2.code)},
        ),
    ),
    "unrelated_agreement_revoked": (revoke_unrelated_agreement, Expect(_none, _none)),
    "agreement_expired": (
        expire_lfs_agreement,
        Expect(
            _lfs_views,
            lambda s: {(s.world.alice.username, s.world.p1.code), (s.world.bob.username, s.world.p2.code)},
        ),
    ),
    "accreditation_revoked": (
        revoke_alice_accreditation,
        Expect(
            _none, lambda s: {(s.world.alice.username, s.world.p1.code), (s.world.alice.username, s.p3.code)}
        ),
    ),
    "accreditation_expired": (
        expire_alice_accreditation,
        Expect(
            _none, lambda s: {(s.world.alice.username, s.world.p1.code), (s.world.alice.username, s.p3.code)}
        ),
    ),
    "membership_removed": (
        remove_alice_from_p3,
        Expect(_none, lambda s: {(s.world.alice.username, s.p3.code)}),
    ),
    "project_closed": (close_p2, Expect(_p2_views, lambda s: {(s.world.bob.username, s.world.p2.code)})),
    "project_end_date_passed": (
        p2_end_date_passes,
        Expect(_p2_views, lambda s: {(s.world.bob.username, s.world.p2.code)}),
    ),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_a_change_withdraws_exactly_what_it_no_longer_allows(
    session: Session, scene: Scene, trigger: str
) -> None:
    change, expect = TRIGGERS[trigger]
    views_before = scene.views()
    servers_before = set(RecordingHub.running)

    change(session, scene)
    session.commit()

    removed = expect.views_removed(scene)
    stopped = expect.servers_stopped(scene)
    views_after = scene.views()
    # What lost access is gone ...
    assert removed.isdisjoint(views_after), f"{trigger}: views still there: {removed & set(views_after)}"
    assert set(RecordingHub.stopped) == stopped
    # ... and every bystander view keeps its files and the same build, every bystander server runs.
    assert views_after == {k: v for k, v in views_before.items() if k not in removed}
    for key in views_after:
        assert (scene.data_dir / "projects" / key[0] / "views" / key[1] / "_SUCCESS").exists()
    assert RecordingHub.running == servers_before - stopped


def test_a_lost_accreditation_takes_the_researcher_out_of_every_project_group(
    session: Session, scene: Scene
) -> None:
    alice = unix_username(scene.world.alice.username, scene.world.alice.unix_username)
    bob = unix_username(scene.world.bob.username, scene.world.bob.unix_username)
    revoke_alice_accreditation(session, scene)
    session.commit()
    assert alice not in group_members(project_group(scene.world.p1.code))
    assert alice not in group_members(project_group(scene.p3.code))
    assert bob in group_members(project_group(scene.p3.code))


def test_tre_view_enforce_withdraws_an_expired_agreement_and_nothing_else(
    session: Session, scene: Scene
) -> None:
    from typer.testing import CliRunner

    from tre_platform.cli import app

    w = scene.world
    views_before = scene.views()
    w.lfs_agreement.valid_to = clock.today()
    session.commit()
    with clock.frozen(_tomorrow()):
        result = CliRunner().invoke(app, ["view", "enforce", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {(v["project"], v["dataset"]) for v in report["views_removed"]} == _lfs_views(scene)
    assert {(s["username"], s["project"]) for s in report["workspaces_stopped"]} == {
        (w.alice.username, w.p1.code),
        (w.bob.username, w.p2.code),
    }
    assert scene.views() == {k: v for k, v in views_before.items() if k not in _lfs_views(scene)}
    assert RecordingHub.running == {(w.bob.username, scene.p3.code), (w.alice.username, scene.p3.code)}


@pytest.mark.parametrize("trigger", ["project_closed", "project_end_date_passed"])
def test_an_ended_project_s_homes_and_shared_folder_are_archived_and_removed_and_no_other(
    session: Session, scene: Scene, trigger: str
) -> None:
    ended, bystander = scene.world.p2.code, scene.world.p1.code
    for code in (ended, bystander):
        for part in (f"homes/{scene.world.bob.username}", "shared"):
            folder = scene.data_dir / "projects" / code / part
            folder.mkdir(parents=True)
            (folder / "notes.py").write_text(f"# {code} {part}\n")

    TRIGGERS[trigger][0](session, scene)
    session.commit()

    assert not (scene.data_dir / "projects" / ended / "homes").exists()
    assert not (scene.data_dir / "projects" / ended / "shared").exists()
    archives = list((scene.data_dir / "archive" / "workspaces").glob(f"{ended}-*.tar.gz"))
    assert len(archives) == 1 and archives[0].stat().st_mode & 0o777 == 0o600
    with tarfile.open(archives[0]) as tar:
        names = set(tar.getnames())
    assert f"{ended}/shared/notes.py" in names
    assert f"{ended}/homes/{scene.world.bob.username}/notes.py" in names
    # The project that goes on keeps its folders, untouched and unarchived.
    assert (scene.data_dir / "projects" / bystander / "shared" / "notes.py").exists()
    assert (
        scene.data_dir / "projects" / bystander / "homes" / scene.world.bob.username / "notes.py"
    ).exists()
    assert not list((scene.data_dir / "archive" / "workspaces").glob(f"{bystander}-*"))
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "project.folders_archived")).all()
    assert [e.target_id for e in events] == [scene.world.p2.id]
