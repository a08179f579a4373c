"""Archive, destroy and the retention sweep: files, views, index links, audit, permissions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from factories import make_user
from helpers import build, view_path
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from typer.testing import CliRunner
from workspace_world import WorkspaceWorld

from tre_lib.indexing.index import ReferenceIndex
from tre_platform.actor import Actor
from tre_platform.api.audit.models import AuditEvent
from tre_platform.api.datasets import lifecycle
from tre_platform.api.datasets.cli import register_catalogue_commands
from tre_platform.api.datasets.models import DatasetVersionEvent
from tre_platform.clock import clock
from tre_platform.errors import Conflict, Forbidden, NotFound
from tre_platform.settings import get_settings
from tre_platform.views.builder import ViewBuildError


def _owner(session: Session, dataset: Any) -> Actor:
    user = make_user(session, roles=["data_owner"], organisation_id=dataset.owner_org_id)
    session.commit()
    return Actor.of(user)


def _actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


def test_archive_moves_the_version_and_views_can_no_longer_use_it(
    session: Session, wworld: WorkspaceWorld
) -> None:
    build(session, wworld.p1)
    assert view_path(wworld.p1, wworld.hes).exists()
    research = Path(wworld.hes.versions[0].path)
    step = lifecycle.archive_version(session, _owner(session, wworld.hes), wworld.hes.name, 1, reason="done")
    session.commit()
    archived = get_settings().resolved_data_dir / "archive" / wworld.hes.name / "v1"
    assert step.moved_to == str(archived)
    assert not research.exists()
    assert (archived / "_SUCCESS").exists() and list(archived.glob("part-*.parquet"))
    assert [(v.project, v.view) for v in step.views_removed] == [(wworld.p1.code, wworld.hes.name)]
    assert not view_path(wworld.p1, wworld.hes).exists()
    assert view_path(wworld.p1, wworld.lfs).exists()
    # A rebuild finds no live version: whether the builder reports it or refuses, no view comes back.
    outcome = build(session, wworld.p1)
    assert isinstance(outcome, ViewBuildError) or wworld.hes.name not in outcome.views
    assert not view_path(wworld.p1, wworld.hes).exists()
    assert lifecycle.newest_live_version(session, wworld.hes) is None
    (state,) = lifecycle.version_lifecycles(session, Actor.system("t"), wworld.hes.name)
    assert state.state == "archived" and state.location == str(archived)
    assert "dataset.version.archive" in _actions(session)
    with pytest.raises(Conflict, match="already archived"):
        lifecycle.archive_version(session, Actor.system("t"), wworld.hes.name, 1)


def _demographic_index(wworld: WorkspaceWorld, ids_frame: pd.DataFrame) -> None:
    """An index whose entries carry the ids the research versions use, half created by each dataset."""
    root = get_settings().resolved_data_dir / "linkage" / "indexes" / "demographic"
    people = pd.DataFrame({"nhs_number": [f"{i:010d}" for i in range(len(ids_frame))]})
    index, _ = ReferenceIndex.create("demographic", root, people)
    index.entries["surrogate_id"] = ids_frame["id"].to_numpy()
    index.entries["source"] = ids_frame["source"].to_numpy()
    index.save()


def test_destroy_removes_files_views_reports_and_index_links_and_is_audited(
    session: Session, wworld: WorkspaceWorld
) -> None:
    hes_ids = set(pd.read_parquet(wworld.hes.versions[0].path)["demographic_id"])
    lfs_ids = set(pd.read_parquet(wworld.lfs.versions[0].path)["demographic_id"])
    only_hes, shared = sorted(hes_ids - lfs_ids), sorted(hes_ids & lfs_ids)
    frame = pd.DataFrame(
        {"id": only_hes + shared, "source": [wworld.hes.name] * (len(only_hes) + len(shared))}
    )
    _demographic_index(wworld, frame)
    reports = get_settings().resolved_data_dir / "linkage" / "reports" / wworld.hes.name / "v1"
    reports.mkdir(parents=True)
    (reports / "demographic.json").write_text("{}")
    build(session, wworld.p1)
    build(session, wworld.p2)
    research = Path(wworld.hes.versions[0].path)

    step = lifecycle.destroy_version(
        session, _owner(session, wworld.hes), wworld.hes.name, 1, reason="agreement ended"
    )
    session.commit()
    assert not research.exists() and not reports.exists()
    assert step.files_removed >= 3 and step.bytes_removed > 0
    assert sorted(v.project for v in step.views_removed) == sorted([wworld.p1.code, wworld.p2.code])
    for project in (wworld.p1, wworld.p2):
        assert not view_path(project, wworld.hes).exists()
        assert view_path(project, wworld.lfs).exists()
    # Only the entries no other version links to are gone; the shared ones still serve the lfs version.
    assert step.index_entries_removed == {"demographic": len(only_hes)}
    index = ReferenceIndex.load(get_settings().resolved_data_dir / "linkage" / "indexes" / "demographic")
    assert set(index.entries["surrogate_id"]) == set(shared)
    assert len(list(index.directory.glob("v[0-9]*"))) == 1  # no older index version keeps them
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "dataset.version.destroy"))
    assert event is not None and event.reasons == ["agreement ended"]
    assert event.details["index_entries_removed"] == {"demographic": len(only_hes)}
    assert str(research) in event.details["removed_paths"]
    assert not set(json.dumps(event.details).split('"')) & hes_ids  # no index ids in the audit log
    assert _actions(session).count("view.remove") == 2
    (state,) = lifecycle.version_lifecycles(session, Actor.system("t"), wworld.hes.name)
    assert state.state == "destroyed" and state.location == ""
    with pytest.raises(Conflict, match="already destroyed"):
        lifecycle.destroy_version(session, Actor.system("t"), wworld.hes.name, 1, reason="again")


def test_lifecycle_events_are_append_only(session: Session, wworld: WorkspaceWorld) -> None:
    lifecycle.archive_version(session, Actor.system("t"), wworld.lfs.name, 1)
    session.commit()
    with pytest.raises(DBAPIError):
        session.execute(text("UPDATE dataset_version_events SET reason = 'nothing happened'"))
    session.rollback()
    with pytest.raises(DBAPIError):
        session.execute(text("DELETE FROM dataset_version_events"))
    session.rollback()
    assert session.scalar(select(DatasetVersionEvent.action)) == "archive"


def _at(days: int) -> dt.datetime:
    return dt.datetime.combine(clock.today() + dt.timedelta(days=days), dt.time(12), dt.UTC)


def test_sweep_honours_retention_and_agreements(session: Session, wworld: WorkspaceWorld) -> None:
    hes, lfs = wworld.hes, wworld.lfs
    hes.retention_days, hes.archive_days = 30, 10
    lfs.retention_days, lfs.archive_days = 30, 0
    session.commit()
    # The world's agreements run for 365 days: no version leaves before they end.
    with clock.frozen(_at(100)):
        assert lifecycle.sweep(session, Actor.system("scheduler")).steps == []
    wworld.hes_agreement.valid_to = clock.today() + dt.timedelta(days=5)
    wworld.lfs_agreement.valid_to = clock.today() + dt.timedelta(days=5)
    session.commit()
    with clock.frozen(_at(20)):
        assert lifecycle.sweep(session, Actor.system("scheduler")).steps == []
    with clock.frozen(_at(35)):
        result = lifecycle.sweep(session, Actor.system("scheduler"))
        session.commit()
    assert sorted((s.dataset, s.action) for s in result.steps) == sorted(
        [(hes.name, "archive"), (lfs.name, "destroy")]
    )
    assert all("retention ended on" in s.reason for s in result.steps)
    assert result.problems == []
    with clock.frozen(_at(38)):
        assert lifecycle.sweep(session, Actor.system("scheduler")).steps == []
    with clock.frozen(_at(45)):
        result = lifecycle.sweep(session, Actor.system("scheduler"))
        session.commit()
    assert [(s.dataset, s.action) for s in result.steps] == [(hes.name, "destroy")]
    assert not (get_settings().resolved_data_dir / "archive" / hes.name / "v1").exists()
    assert _actions(session).count("dataset.sweep") == 5


def test_a_failed_sweep_step_keeps_the_audit_of_what_it_could_not_undo(
    session: Session, wworld: WorkspaceWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files and views deleted by a destroy stay deleted when a later part of the step fails and its
    savepoint rolls back: the log must still say so, although the version itself stays live."""
    from tre_platform.api.audit.service import verify
    from tre_platform.errors import TreError

    build(session, wworld.p1)
    research = Path(wworld.lfs.versions[0].path)
    wworld.lfs.retention_days, wworld.lfs.archive_days = 30, 0
    wworld.lfs_agreement.valid_to = clock.today() + dt.timedelta(days=5)
    session.commit()

    def servers_unreachable(*_: object) -> None:
        raise TreError("the hub did not answer")

    monkeypatch.setattr(lifecycle, "_enforce", servers_unreachable)
    with clock.frozen(_at(35)):
        result = lifecycle.sweep(session, Actor.system("scheduler"))
        session.commit()
    assert result.steps == [] and result.problems == [f"{wworld.lfs.name} v1: the hub did not answer"]
    assert not research.exists() and not view_path(wworld.p1, wworld.lfs).exists()
    actions = _actions(session)
    assert actions.count("view.remove") == 1 and actions.count("dataset.version.destroy") == 1
    assert verify(session).ok
    # The lifecycle row went with the savepoint, so the next sweep finds the version live and retries.
    (state,) = lifecycle.version_lifecycles(session, Actor.system("t"), wworld.lfs.name)
    assert state.state == "live"


def test_other_organisations_and_researchers_are_refused(session: Session, wworld: WorkspaceWorld) -> None:
    other_owner = _owner(session, wworld.lfs)
    researcher = Actor.of(wworld.alice)
    for actor in (other_owner, researcher):
        with pytest.raises(NotFound):
            lifecycle.archive_version(session, actor, wworld.hes.name, 1)
        with pytest.raises(NotFound):
            lifecycle.destroy_version(session, actor, wworld.hes.name, 1, reason="not mine")
        with pytest.raises(NotFound):
            lifecycle.version_lifecycles(session, actor, wworld.hes.id)
    with pytest.raises(Forbidden):
        lifecycle.sweep(session, researcher)
    assert Path(wworld.hes.versions[0].path).exists()
    # A data owner's sweep only ever touches their own organisation's datasets.
    wworld.hes.retention_days = wworld.lfs.retention_days = 1
    session.commit()
    with clock.frozen(_at(400)):
        result = lifecycle.sweep(session, other_owner)
    assert {s.dataset for s in result.steps} == {wworld.lfs.name}
    assert Path(wworld.hes.versions[0].path).exists()


def test_cli_archive_destroy_and_sweep(session: Session, wworld: WorkspaceWorld) -> None:
    app = typer.Typer()
    register_catalogue_commands(app)
    runner = CliRunner()
    result = runner.invoke(app, ["archive", wworld.hes.name, "--version", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "archive"
    result = runner.invoke(app, ["destroy", wworld.hes.name, "--version", "1", "--reason", "retention over"])
    assert result.exit_code == 0, result.output
    assert "destroyed" in result.stdout
    result = runner.invoke(app, ["lifecycle", wworld.hes.name, "--json"])
    assert [r["state"] for r in json.loads(result.stdout)] == ["destroyed"]
    result = runner.invoke(app, ["sweep", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["checked"] == 2
    result = runner.invoke(
        app,
        ["destroy", wworld.lfs.name, "--version", "1", "--reason", "x" * 5, "--as", wworld.alice.username],
    )
    assert result.exit_code == 1 and "whose versions you manage" in result.output
