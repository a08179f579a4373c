"""The view builder: policy-decided, re-keyed, only approved columns, atomic, and removed when revoked."""

from __future__ import annotations

import datetime as dt
import hmac
import os
import stat
from hashlib import sha256
from pathlib import Path

import pandas as pd
import pytest
from factories import SYSTEM, make_user
from sqlalchemy import select
from sqlalchemy.orm import Session
from workspace_world import WorkspaceWorld, publish_version, research_frame

from tre_lib import session as tre_session
from tre_lib.compute import read_manifest
from tre_lib.pseudonymise import KeyRing, derive_project_key, load_kek
from tre_platform.actor import Actor
from tre_platform.api.agreements import service as agreements
from tre_platform.api.agreements.schemas import AgreementRevoke
from tre_platform.api.audit.models import AuditEvent
from tre_platform.clock import clock
from tre_platform.errors import Forbidden
from tre_platform.settings import get_settings
from tre_platform.views import build_views, list_views
from tre_platform.views.storage import project_group


def _view(data_dir: Path, code: str, dataset: str) -> pd.DataFrame:
    return tre_session(code, views_dir=data_dir / "projects" / code / "views").read(dataset)


def test_a_projects_two_views_join_on_the_re_keyed_ids(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    result = build_views(session, SYSTEM, wworld.p1.code)
    session.commit()
    assert {o.dataset: o.action for o in result.outcomes} == {
        wworld.hes.name: "built",
        wworld.lfs.name: "built",
    }
    hes, lfs = (
        _view(data_dir, wworld.p1.code, wworld.hes.name),
        _view(data_dir, wworld.p1.code, wworld.lfs.name),
    )
    joined = hes.merge(lfs, on="demographic_id")
    assert len(joined) == len(wworld.shared_ids) > 0
    # The IDs are HMAC-SHA256(K_project, research id): recompute one from the key ring.
    settings = get_settings()
    ring = KeyRing(settings.resolved_data_dir / "keys", load_kek(settings.kek, settings.kek_file))
    key = derive_project_key(ring.get(ring.active_version()), wworld.p1.id, wworld.p1.key_version)
    expected = {hmac.new(key, rid.encode(), sha256).hexdigest() for rid in wworld.shared_ids}
    assert set(joined["demographic_id"]) == expected


def test_the_same_person_has_unrelated_ids_in_two_projects(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    build_views(session, SYSTEM, wworld.p2.code)
    a = _view(data_dir, wworld.p1.code, wworld.hes.name)
    b = _view(data_dir, wworld.p2.code, wworld.hes.name)
    assert len(a) == len(b) == 200
    # Same rows in the same order, yet not one ID in common: the projects cannot join their extracts.
    assert not set(a["demographic_id"]) & set(b["demographic_id"])
    assert a["demographic_id"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_only_approved_columns_and_ids_reach_a_view(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    build_views(session, SYSTEM, wworld.p2.code)
    hes = _view(data_dir, wworld.p2.code, wworld.hes.name)
    lfs = _view(data_dir, wworld.p2.code, wworld.lfs.name)
    assert list(hes.columns) == ["demographic_id", "age"]
    assert list(lfs.columns) == ["demographic_id", "employment_status"]
    manifest = read_manifest(data_dir / "projects" / wworld.p2.code / "views" / wworld.hes.name)
    assert manifest.id_columns == ["demographic_id"]
    assert manifest.row_count == 200 and manifest.source_version == 1
    # No file anywhere in the project's area mentions an unapproved column.
    for path in (data_dir / "projects" / wworld.p2.code).rglob("*"):
        if path.is_file() and path.suffix in (".parquet", ".json"):
            content = path.read_bytes()
            assert b"secret_note" not in content and b"diagnosis" not in content and b"pay" not in content


def test_a_revoked_agreement_removes_the_view_at_the_next_build(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    session.commit()
    agreements.revoke_agreement(
        session, SYSTEM, wworld.lfs_agreement.id, AgreementRevoke(reason="owner withdrew")
    )
    session.commit()
    result = build_views(session, SYSTEM, wworld.p1.code)
    session.commit()
    removed = result.outcome(wworld.lfs.name)
    assert removed.action == "removed"
    assert any("revoked" in reason for reason in removed.reasons)
    assert result.outcome(wworld.hes.name).action == "unchanged"
    views = data_dir / "projects" / wworld.p1.code / "views"
    assert not (views / wworld.lfs.name).exists()
    assert [d.name for d in tre_session(wworld.p1.code, views_dir=views).datasets()] == [wworld.hes.name]
    # The build left nothing of the revoked view behind.
    assert not [p for p in (views / ".builds").iterdir() if p.name.startswith(wworld.lfs.name)]
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "view.remove")).all()
    assert events and events[-1].details["dataset"] == wworld.lfs.name


def test_an_expired_project_loses_every_view(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    with clock.frozen(clock.now() + dt.timedelta(days=400)):
        result = build_views(session, SYSTEM, wworld.p1.code)
    assert {o.action for o in result.outcomes} == {"removed"}
    assert all(any("ended" in r for r in o.reasons) for o in result.outcomes)


def test_every_view_build_is_a_policy_decision_in_the_audit_log(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    session.commit()
    decisions = session.scalars(select(AuditEvent).where(AuditEvent.action == "policy.build_view")).all()
    assert {d.details["dataset_id"] for d in decisions} == {wworld.hes.id, wworld.lfs.id}
    assert all(d.decision == "allow" and d.reasons for d in decisions)
    builds = session.scalars(select(AuditEvent).where(AuditEvent.action == "view.build")).all()
    assert sorted(b.details["dataset"] for b in builds) == sorted([wworld.hes.name, wworld.lfs.name])


def test_a_researcher_may_not_build_views(session: Session, wworld: WorkspaceWorld, data_dir: Path) -> None:
    with pytest.raises(Forbidden, match="needs the role admin or enforcer"):
        build_views(session, Actor.of(wworld.alice), wworld.p1.code)
    assert not list((data_dir / "projects" / wworld.p1.code / "views").glob("[!.]*"))


def test_a_refusal_for_lack_of_rights_never_removes_a_view_still_allowed(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    """The live bug: a build asked by someone who may not build views was taken for withdrawn access."""
    build_views(session, SYSTEM, wworld.p1.code)
    session.commit()
    views = data_dir / "projects" / wworld.p1.code / "views"
    before = {name: os.readlink(views / name) for name in (wworld.hes.name, wworld.lfs.name)}
    owner = make_user(session, roles=["data_owner"], organisation_id=wworld.hes.owner_org_id)
    with pytest.raises(Forbidden):
        build_views(session, Actor.of(owner), wworld.p1.code)
    assert {name: os.readlink(views / name) for name in before} == before


def test_a_new_version_is_published_atomically_and_the_old_build_goes(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    import numpy as np

    build_views(session, SYSTEM, wworld.p1.code)
    views = data_dir / "projects" / wworld.p1.code / "views"
    before = os.readlink(views / wworld.hes.name)
    publish_version(
        session, wworld.hes, research_frame("hes", np.random.default_rng(1), np.array(["a" * 16] * 50))
    )
    session.commit()
    result = build_views(session, SYSTEM, wworld.p1.code)
    outcome = result.outcome(wworld.hes.name)
    assert (outcome.action, outcome.source_version, outcome.rows) == ("built", 2, 50)
    after = os.readlink(views / wworld.hes.name)
    assert after != before and (views / wworld.hes.name).is_symlink()
    assert not (views / before).exists()
    assert len(_view(data_dir, wworld.p1.code, wworld.hes.name)) == 50


def test_views_are_read_only_and_owned_by_the_project_group(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    import grp

    build_views(session, SYSTEM, wworld.p1.code)
    project_dir = data_dir / "projects" / wworld.p1.code
    gid = grp.getgrnam(project_group(wworld.p1.code)).gr_gid
    st = project_dir.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o750)
    view = (project_dir / "views" / wworld.hes.name).resolve()
    assert stat.S_IMODE(view.stat().st_mode) == 0o550
    for path in view.iterdir():
        assert (path.stat().st_gid, stat.S_IMODE(path.stat().st_mode)) == (gid, 0o440)
    for name in ("research", "keys"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) & 0o077 == 0


def test_a_non_member_researcher_is_not_put_in_the_group(
    session: Session, wworld: WorkspaceWorld, data_dir: Path
) -> None:
    import grp

    outsider = make_user(session, roles=["researcher"])
    session.commit()
    result = build_views(session, SYSTEM, wworld.p1.code)
    members = set(grp.getgrnam(project_group(wworld.p1.code)).gr_mem)
    assert members == {f"tre-u-{wworld.alice.username}"} == set(result.members_added)
    assert f"tre-u-{outsider.username}" not in members


def test_spark_and_arrow_engines_build_identical_views(
    session: Session, wworld: WorkspaceWorld, data_dir: Path, spark: object
) -> None:
    build_views(session, SYSTEM, wworld.p1.code, engine="arrow")
    arrow = _view(data_dir, wworld.p1.code, wworld.lfs.name)
    publish_version(
        session, wworld.lfs, pd.read_parquet(sorted((Path(wworld.lfs.versions[0].path)).glob("*.parquet"))[0])
    )
    session.commit()
    result = build_views(session, SYSTEM, wworld.p1.code, engine="spark", spark=spark)  # type: ignore[arg-type]
    assert result.outcome(wworld.lfs.name).action == "built"
    via_spark = _view(data_dir, wworld.p1.code, wworld.lfs.name)
    merged = arrow.merge(via_spark, on=list(arrow.columns))
    assert len(merged) == len(via_spark) > 0


def test_view_list_reads_the_manifests(session: Session, wworld: WorkspaceWorld, data_dir: Path) -> None:
    build_views(session, SYSTEM, wworld.p1.code)
    listed = list_views(session, wworld.p1.code)
    assert sorted(m.dataset for _, m in listed) == sorted([wworld.hes.name, wworld.lfs.name])
