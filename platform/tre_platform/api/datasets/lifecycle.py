"""Retention, archiving and destruction of published dataset versions.

A version's **retention date** is its publication date plus the dataset's ``retention_days``, extended to
the end of the latest non-revoked agreement that covers the dataset when that runs longer (data an
agreement still shares is never destroyed under it). Past that date the sweep archives the version and,
``archive_days`` later, destroys it (``archive_days=0``: destroys it straight away).

- **archive**: ``research/<ds>/v<N>`` is renamed to ``archive/<ds>/v<N>`` (one ``rename``, same
  filesystem), and project views built from it are removed: an archived version is kept for the owner,
  not for research.
- **destroy**: the version's files are deleted wherever they are (research or archive zone), with its
  match-quality reports (``linkage/reports/<ds>/v<N>``); every project view built from it is removed;
  and its **index links** are removed: reference-index entries that were *created by this dataset's
  deliveries* (``source`` = the dataset name), are referenced by this version's ``<kind>_id`` columns, and
  are referenced by no other live or archived version of any dataset. The index is re-saved keeping no
  older index versions, so the removed entries are gone from disk too. Entries first created by another
  dataset, or still used by another version, stay: other versions' links depend on them.

The version row is immutable (a trigger refuses UPDATE), so each step is an append-only
:class:`DatasetVersionEvent`. Steps are recorded (and flushed) before files move, and both tolerate a
previous attempt that moved or deleted the files but whose transaction did not commit, so re-running
repairs a crash. Only the owning organisation's data owners, administrators and the operator may act;
anyone else is told the version does not exist (404), as for ``list_versions``.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.agreements.models import AgreementDataset, DataSharingAgreement
from tre_platform.api.common import audit, can_manage_org_data, check_user
from tre_platform.api.datasets.models import Dataset, DatasetVersion, DatasetVersionEvent, LifecycleAction
from tre_platform.api.datasets.schemas import LifecycleStepOut, RemovedView, SweepOut, VersionLifecycleOut
from tre_platform.api.users.models import Role
from tre_platform.clock import clock
from tre_platform.enforcement import access_changed, withdraw_version_views
from tre_platform.errors import Conflict, Forbidden, NotFound, TreError
from tre_platform.settings import get_settings

ARCHIVE_DIR = "archive"


class VersionState(enum.StrEnum):
    live = "live"
    archived = "archived"
    destroyed = "destroyed"


@dataclass(frozen=True)
class VersionLifecycle:
    """Where a version is in its life, derived from its events and its dataset's retention."""

    state: VersionState
    retention_until: dt.date
    retention_basis: str
    destroy_after: dt.date
    archived: DatasetVersionEvent | None
    destroyed: DatasetVersionEvent | None
    location: str


# Reading ------------------------------------------------------------------------------------------


def covering_agreements(session: Session, dataset: Dataset) -> list[DataSharingAgreement]:
    """Non-revoked agreements that share ``dataset`` (all of its owner's datasets, or it by name) at its
    tier, whatever their dates; callers filter on :meth:`DataSharingAgreement.status`."""
    linked = exists().where(
        AgreementDataset.agreement_id == DataSharingAgreement.id, AgreementDataset.dataset_id == dataset.id
    )
    return list(
        session.scalars(
            select(DataSharingAgreement)
            .where(
                DataSharingAgreement.owner_org_id == dataset.owner_org_id,
                DataSharingAgreement.revoked_at.is_(None),
                DataSharingAgreement.max_tier >= dataset.tier,
                or_(DataSharingAgreement.all_datasets.is_(True), linked),
            )
            .order_by(DataSharingAgreement.reference)
        ).unique()
    )


def retention_of(session: Session, dataset: Dataset, version: DatasetVersion) -> tuple[dt.date, str]:
    """The retention date of ``version`` and why (see the module docstring)."""
    registered = version.created_at.date() + dt.timedelta(days=dataset.retention_days)
    basis = f"{dataset.retention_days} days from publication on {version.created_at.date().isoformat()}"
    longest = max(covering_agreements(session, dataset), key=lambda a: a.valid_to, default=None)
    if longest is not None and longest.valid_to > registered:
        return (
            longest.valid_to,
            f"agreement {longest.reference} shares it until {longest.valid_to.isoformat()}",
        )
    return registered, basis


def _events(session: Session, version: DatasetVersion) -> dict[LifecycleAction, DatasetVersionEvent]:
    rows = session.scalars(select(DatasetVersionEvent).where(DatasetVersionEvent.version_id == version.id))
    return {row.action: row for row in rows}


def lifecycle_of(session: Session, version: DatasetVersion) -> VersionLifecycle:
    """The state, retention date and location of one version."""
    dataset = version.dataset
    events = _events(session, version)
    archived, destroyed = events.get(LifecycleAction.archive), events.get(LifecycleAction.destroy)
    retention, basis = retention_of(session, dataset, version)
    if destroyed is not None:
        state, location = VersionState.destroyed, ""
    elif archived is not None:
        state, location = VersionState.archived, archived.location
    else:
        state, location = VersionState.live, version.path
    return VersionLifecycle(
        state=state,
        retention_until=retention,
        retention_basis=basis,
        destroy_after=retention + dt.timedelta(days=dataset.archive_days),
        archived=archived,
        destroyed=destroyed,
        location=location,
    )


def newest_live_version(session: Session, dataset: Dataset) -> DatasetVersion | None:
    """The newest version that is neither archived nor destroyed: the one view builds should read."""
    retired = select(DatasetVersionEvent.version_id)
    return session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.id.not_in(retired))
        .order_by(DatasetVersion.version.desc())
        .limit(1)
    ).first()


def _to_out(version: DatasetVersion, life: VersionLifecycle) -> VersionLifecycleOut:
    return VersionLifecycleOut(
        dataset=version.dataset.name,
        version=version.version,
        state=life.state.value,
        retention_until=life.retention_until,
        retention_basis=life.retention_basis,
        destroy_after=life.destroy_after,
        archived_at=life.archived.at if life.archived else None,
        destroyed_at=life.destroyed.at if life.destroyed else None,
        location=life.location,
    )


def _owned_dataset(session: Session, actor: Actor, dataset_ref: str) -> Dataset:
    check_user(actor)
    dataset = session.scalars(
        select(Dataset).where(or_(Dataset.id == dataset_ref, Dataset.name == dataset_ref))
    ).first()
    if dataset is None or not can_manage_org_data(actor, dataset.owner_org_id):
        raise NotFound(f"no dataset {dataset_ref!r} whose versions you manage; give its name or id")
    return dataset


def _owned_version(session: Session, actor: Actor, dataset_ref: str, number: int) -> DatasetVersion:
    dataset = _owned_dataset(session, actor, dataset_ref)
    version = session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == number
        )
    )
    if version is None:
        raise NotFound(f"dataset {dataset.name!r} has no version {number}; `tre dataset versions` lists them")
    return version


def version_lifecycles(session: Session, actor: Actor, dataset_ref: str) -> list[VersionLifecycleOut]:
    """Every version of a dataset with its state and retention (owner organisation's data owners, admins)."""
    dataset = _owned_dataset(session, actor, dataset_ref)
    return [_to_out(v, lifecycle_of(session, v)) for v in dataset.versions]


# Files --------------------------------------------------------------------------------------------


def archive_path(dataset: Dataset, version: DatasetVersion) -> Path:
    """``<data dir>/archive/<dataset>/v<N>``."""
    return get_settings().resolved_data_dir / ARCHIVE_DIR / dataset.name / f"v{version.version}"


def _record(
    session: Session,
    actor: Actor,
    version: DatasetVersion,
    action: LifecycleAction,
    *,
    reason: str,
    retention_until: dt.date,
    location: str,
    details: dict[str, object],
) -> DatasetVersionEvent:
    event = DatasetVersionEvent(
        version_id=version.id,
        dataset_id=version.dataset_id,
        action=action,
        actor=actor.label[:64],
        actor_id=actor.user_id,
        reason=reason,
        retention_until=retention_until,
        location=location,
        details=details,
    )
    try:
        with session.begin_nested():
            session.add(event)
    except IntegrityError:
        raise Conflict(
            f"version {version.version} of {version.dataset.name} was just {action.value}d by someone else"
        ) from None
    return event


def _remove_views(session: Session, actor: Actor, version: DatasetVersion, why: str) -> list[RemovedView]:
    # Through the enforcement interface: the view builder owns the layout of views/ and its locks.
    return [
        RemovedView(project=code, view=name)
        for code, name in withdraw_version_views(session, actor, version.id, why)
    ]


def _tree_size(root: Path) -> tuple[list[str], int]:
    names, size = [], 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            names.append(str(path.relative_to(root)))
            size += path.stat().st_size
    return names, size


def _delete_tree(root: Path) -> bool:
    """Make ``root`` disappear at once (rename), then delete it. False if it was not there."""
    if not root.exists():
        return False
    doomed = root.parent / f".destroying-{root.name}-{secrets.token_hex(4)}"
    os.rename(root, doomed)
    shutil.rmtree(doomed)
    return True


# Index links --------------------------------------------------------------------------------------


def _id_values(location: Path, columns: Iterable[str]) -> dict[str, set[str]]:
    """The values of each ``<kind>_id`` column held by the Parquet files under ``location``."""
    import pyarrow.parquet as pq

    wanted = list(columns)
    found: dict[str, set[str]] = {c: set() for c in wanted}
    if not location.is_dir():
        return found
    for part in sorted(location.glob("part-*.parquet")):
        present = [c for c in wanted if c in pq.read_schema(part).names]
        if not present:
            continue
        table = pq.read_table(part, columns=present)
        for column in present:
            found[column] |= {v for v in table.column(column).to_pylist() if v is not None}
    return found


def _remove_index_links(
    session: Session, dataset: Dataset, version: DatasetVersion, ids: dict[str, set[str]]
) -> dict[str, int]:
    """Delete the index entries only this version links to and this dataset created (module docstring)."""
    from tre_lib.indexing.index import IndexNotFoundError, ReferenceIndex

    if not any(ids.values()):
        return {}
    # Every other version that still has files: its links must keep working.
    still_used: dict[str, set[str]] = {column: set() for column in ids}
    for other in session.scalars(select(DatasetVersion).where(DatasetVersion.id != version.id)):
        life = lifecycle_of(session, other)
        if life.state is not VersionState.destroyed and life.location:
            for column, values in _id_values(Path(life.location), ids).items():
                still_used[column] |= values
    removed: dict[str, int] = {}
    root = get_settings().resolved_data_dir / "linkage" / "indexes"
    for column, values in ids.items():
        kind = column.removesuffix("_id")
        try:
            index = ReferenceIndex.load(root / kind)
        except IndexNotFoundError:
            continue
        entries = index.entries
        doomed = (entries["source"] == dataset.name) & entries["surrogate_id"].isin(
            values - still_used[column]
        )
        count = int(doomed.sum())
        if count:
            index.entries = entries[~doomed].reset_index(drop=True)
            # keep_versions=1: older index versions still hold the removed entries.
            index.save(keep_versions=1)
        removed[kind] = count
    return removed


# Steps --------------------------------------------------------------------------------------------


def archive_version(
    session: Session, actor: Actor, dataset_ref: str, number: int, *, reason: str = ""
) -> LifecycleStepOut:
    """Move a live version to the archive zone; views built from it are removed.

    Args:
        session: database session (the caller commits).
        actor: a data owner of the owning organisation, an administrator or the operator.
        dataset_ref: dataset name or id.
        number: version number.
        reason: recorded with the event (the sweep gives the retention date).

    Raises:
        NotFound: no such dataset or version, or not one the actor manages.
        Conflict: the version is already archived or destroyed, or its files are missing.

    Example:
        >>> archive_version(session, Actor.of(owner), "hes", 1, reason="superseded")  # doctest: +SKIP
    """
    version = _owned_version(session, actor, dataset_ref, number)
    dataset = version.dataset
    life = lifecycle_of(session, version)
    if life.state is not VersionState.live:
        raise Conflict(f"version {number} of {dataset.name} is already {life.state.value}")
    source, target = Path(version.path), archive_path(dataset, version)
    recovering = not source.exists() and target.exists()
    if not source.exists() and not recovering:
        raise Conflict(
            f"version {number} of {dataset.name} has no files at {source}; destroy it instead "
            f"(`tre dataset destroy {dataset.name} --version {number} --reason ...`)"
        )
    if source.exists() and target.exists():
        raise Conflict(f"{target} already exists; move it aside, then archive again")
    names, size = _tree_size(target if recovering else source)
    _record(
        session,
        actor,
        version,
        LifecycleAction.archive,
        reason=reason,
        retention_until=life.retention_until,
        location=str(target),
        details={"from": str(source), "files": len(names), "bytes": size},
    )
    if not recovering:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.rename(source, target)  # same filesystem: the version is in one place or the other
    why = f"dataset {dataset.name} v{number} was archived"
    views = _remove_views(session, actor, version, why)
    audit(
        session,
        actor,
        "dataset.version.archive",
        dataset,
        reasons=[reason] if reason else [],
        version=number,
        retention_until=life.retention_until.isoformat(),
        moved_to=str(target),
        files=len(names),
        views_removed=[f"{v.project}/{v.view}" for v in views],
    )
    _enforce(session, actor, views)
    return LifecycleStepOut(
        dataset=dataset.name,
        version=number,
        action=LifecycleAction.archive.value,
        reason=reason,
        retention_until=life.retention_until,
        moved_to=str(target),
        files_removed=0,
        views_removed=views,
    )


def destroy_version(
    session: Session, actor: Actor, dataset_ref: str, number: int, *, reason: str
) -> LifecycleStepOut:
    """Delete a version's files, its reports, the views built from it and its index links.

    Args:
        session: database session (the caller commits).
        actor: a data owner of the owning organisation, an administrator or the operator.
        dataset_ref: dataset name or id.
        number: version number.
        reason: why (required; recorded and audited).

    Raises:
        NotFound: no such dataset or version, or not one the actor manages.
        Conflict: the version is already destroyed.
        InvalidInput: no reason given.

    Example:
        >>> destroy_version(session, Actor.of(owner), "hes", 1, reason="agreement ended")  # doctest: +SKIP
    """
    from tre_platform.errors import InvalidInput

    if len(reason.strip()) < 3:
        raise InvalidInput("say why the version is destroyed (--reason); it is kept in the audit log")
    version = _owned_version(session, actor, dataset_ref, number)
    dataset = version.dataset
    life = lifecycle_of(session, version)
    if life.state is VersionState.destroyed:
        raise Conflict(f"version {number} of {dataset.name} was already destroyed")
    data_dir = get_settings().resolved_data_dir
    locations = [Path(version.path), archive_path(dataset, version)]
    reports = data_dir / "linkage" / "reports" / dataset.name / f"v{number}"
    id_columns = sorted({f"{kind}_id" for kind in dataset.identifier_columns.values() if kind})
    ids: dict[str, set[str]] = {c: set() for c in id_columns}
    files: list[str] = []
    size = 0
    for location in locations:
        for column, values in _id_values(location, id_columns).items():
            ids[column] |= values
        if location.is_dir():
            names, bytes_ = _tree_size(location)
            files += names
            size += bytes_
    # Index entries are decided while this version's files still exist (other versions are read too).
    index_removed = _remove_index_links(session, dataset, version, ids)
    removed_paths = [str(p) for p in [*locations, reports] if p.exists()]
    _record(
        session,
        actor,
        version,
        LifecycleAction.destroy,
        reason=reason,
        retention_until=life.retention_until,
        location="",
        details={
            "removed_paths": removed_paths,
            "files": len(files),
            "bytes": size,
            "index_entries_removed": index_removed,
        },
    )
    for path in [*locations, reports]:
        _delete_tree(path)
    why = f"dataset {dataset.name} v{number} was destroyed: {reason}"
    views = _remove_views(session, actor, version, why)
    audit(
        session,
        actor,
        "dataset.version.destroy",
        dataset,
        reasons=[reason],
        version=number,
        retention_until=life.retention_until.isoformat(),
        removed_paths=removed_paths,
        files=len(files),
        bytes=size,
        views_removed=[f"{v.project}/{v.view}" for v in views],
        index_entries_removed=index_removed,
        kept=True,  # the files are deleted even if this step is rolled back
    )
    _enforce(session, actor, views)
    return LifecycleStepOut(
        dataset=dataset.name,
        version=number,
        action=LifecycleAction.destroy.value,
        reason=reason,
        retention_until=life.retention_until,
        removed_paths=removed_paths,
        files_removed=len(files),
        bytes_removed=size,
        views_removed=views,
        index_entries_removed=index_removed,
    )


def _enforce(session: Session, actor: Actor, views: list[RemovedView]) -> None:
    # Stop running workspaces that had a removed view open (the hook is off in most tests).
    if views:
        access_changed(session, actor, sorted({v.project for v in views}))


def sweep(session: Session, actor: Actor) -> SweepOut:
    """Archive or destroy every version past its retention date; for a scheduler (``tre dataset sweep``).

    Live versions past retention are archived (destroyed when the dataset's ``archive_days`` is 0);
    archived versions ``archive_days`` past retention are destroyed. Each step is its own savepoint,
    so one failure is reported and the rest go ahead; the next sweep retries it.

    Args:
        session: database session (the caller commits).
        actor: the operator or an administrator (every dataset), or a data owner (their organisations').

    Raises:
        Forbidden: any other user.
    """
    check_user(actor)
    if not (actor.is_admin or actor.has_role(Role.data_owner)):
        raise Forbidden("only an administrator, a data owner or the operator may sweep dataset versions")
    today = clock.today()
    steps: list[LifecycleStepOut] = []
    problems: list[str] = []
    checked = 0
    datasets = [
        d
        for d in session.scalars(select(Dataset).order_by(Dataset.name)).unique()
        if can_manage_org_data(actor, d.owner_org_id)
    ]
    for dataset in datasets:
        for version in list(dataset.versions):
            checked += 1
            life = lifecycle_of(session, version)
            due = f"retention ended on {life.retention_until.isoformat()} ({life.retention_basis})"
            try:
                with session.begin_nested():
                    if life.state is VersionState.live and today > life.retention_until:
                        if dataset.archive_days == 0:
                            steps.append(
                                destroy_version(session, actor, dataset.id, version.version, reason=due)
                            )
                        else:
                            steps.append(
                                archive_version(session, actor, dataset.id, version.version, reason=due)
                            )
                    elif life.state is VersionState.archived and today > life.destroy_after:
                        reason = f"{due}; archive period of {dataset.archive_days} days ended"
                        steps.append(
                            destroy_version(session, actor, dataset.id, version.version, reason=reason)
                        )
            except (TreError, OSError) as exc:
                message = exc.message if isinstance(exc, TreError) else str(exc)
                problems.append(f"{dataset.name} v{version.version}: {message}")
    audit(
        session,
        actor,
        "dataset.sweep",
        target_type="datasets",
        checked=checked,
        steps=[f"{s.action} {s.dataset} v{s.version}" for s in steps],
        problems=problems,
    )
    return SweepOut(checked=checked, steps=steps, problems=problems)
