"""Project views: each approved dataset, with only the approved columns and the index IDs re-keyed.

For every dataset a project's approval lists, the policy engine decides ``build_view`` (audited, with its
reasons). Allowed: the newest published version of the dataset is read from the research zone, only the
approved columns and the index-ID columns (``demographic_id``, ``business_id`` ...) are kept, and each ID
is replaced by ``HMAC-SHA256(K_project, id)`` where ``K_project`` is derived from the master key for the
project and its key version. Two datasets of one project therefore join on these IDs; two projects hold
unrelated IDs for the same person. Denied (agreement revoked, project expired, column no longer
approved ...) or no longer listed: the view is removed.

Publishing is atomic: a view is written into ``views/.builds/<dataset>@<build>`` and ``views/<dataset>``
is a relative symlink switched with one ``rename``; readers see the old view or the new one, never half.
An unchanged view (same source version, columns and keys) is not rebuilt.

Two engines do the same thing: ``arrow`` streams each Parquet file through pyarrow in batches (no cluster
to start, memory bounded by the batch size; the default) and ``spark`` runs it as a Spark job for data
that outgrows one machine. Both use :mod:`tre_lib.pseudonymise`, so their outputs are identical.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre_lib.compute.manifest import (
    ColumnInfo,
    FileInfo,
    ViewManifest,
    parquet_parts,
    read_manifest,
    sha256_file,
    write_manifest,
)
from tre_platform.actor import Actor
from tre_platform.api.common import audit
from tre_platform.api.datasets.models import Dataset, DatasetVersion, IndexKind
from tre_platform.api.projects.models import Project
from tre_platform.clock import clock
from tre_platform.errors import Forbidden, NotFound, TreError
from tre_platform.policy import Decision, authorize
from tre_platform.settings import Settings, get_settings
from tre_platform.views import storage
from tre_platform.views.settings import get_workspace_settings
from tre_platform.views.storage import StorageMode

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

BuildEngine = Literal["arrow", "spark"]
BUILDS_DIR = ".builds"
#: The index-ID columns a research version may carry (``<index kind>_id``).
INDEX_ID_COLUMNS = frozenset(f"{kind.value}_id" for kind in IndexKind)
BATCH_ROWS = 65_536


class ViewBuildError(TreError):
    """A view could not be built; the message says what is wrong with its inputs."""

    status_code = 500
    code = "view_build_failed"


@dataclass(frozen=True)
class ViewOutcome:
    """What happened to one dataset's view in a build."""

    dataset: str
    #: built | unchanged | removed (was there, no longer allowed or listed) | denied (not there, not
    #: allowed) | no_version (allowed, nothing published yet) | kept (still allowed; withdraw-only runs
    #: neither rebuild nor touch it) | absent (allowed, never built; withdraw-only runs build nothing)
    action: Literal["built", "unchanged", "removed", "denied", "no_version", "kept", "absent"]
    reasons: tuple[str, ...] = ()
    source_version: int | None = None
    rows: int | None = None
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ViewBuildResult:
    project: str
    views_dir: Path
    outcomes: tuple[ViewOutcome, ...]
    members_added: tuple[str, ...] = ()
    members_removed: tuple[str, ...] = ()
    storage_mode: str = StorageMode.unix.value

    def outcome(self, dataset: str) -> ViewOutcome:
        for item in self.outcomes:
            if item.dataset == dataset:
                return item
        raise KeyError(dataset)

    @property
    def views(self) -> list[str]:
        return [o.dataset for o in self.outcomes if o.action in ("built", "unchanged")]


@dataclass
class _KeySource:
    """Unwraps the master key only when some view actually needs building."""

    settings: Settings
    project: Project
    _cache: dict[str, object] = field(default_factory=dict)

    def ring(self) -> object:
        if "ring" not in self._cache:
            from tre_lib.pseudonymise import KeyRing, load_kek

            kek = load_kek(*self.settings.kek_source())
            ring = KeyRing(self.settings.resolved_data_dir / "keys", kek)
            if not ring.versions():
                # First use on a fresh deployment: create the master key (an empty ring can only mean
                # that none exists yet; a lost ring is never silently replaced because versions remain).
                ring.create()
            self._cache["ring"] = ring
        return self._cache["ring"]

    def master_version(self) -> int:
        return int(self.ring().active_version())  # type: ignore[attr-defined]

    def project_key(self) -> bytes:
        if "key" not in self._cache:
            from tre_lib.pseudonymise import derive_project_key

            ring = self.ring()
            version = self.master_version()
            self._cache["key"] = derive_project_key(
                ring.get(version),  # type: ignore[attr-defined]
                self.project.id,
                self.project.key_version,
            )
        return self._cache["key"]  # type: ignore[return-value]


def find_project(session: Session, ref: str) -> Project:
    """A project by id or code."""
    project = (
        session.execute(select(Project).where(or_(Project.id == ref, Project.code == ref)))
        .unique()
        .scalar_one_or_none()
    )
    if project is None:
        raise NotFound(f"no project {ref!r}; give its code (e.g. P-2026-1A2B3C) or id")
    return project


def newest_version(session: Session, dataset: Dataset) -> DatasetVersion | None:
    """The newest version a view may read: archived and destroyed versions are out of research use."""
    from tre_platform.api.datasets.lifecycle import newest_live_version

    return newest_live_version(session, dataset)


def views_dir(project_code: str, settings: Settings | None = None) -> Path:
    """``<data dir>/projects/<code>/views``."""
    return (settings or get_settings()).resolved_data_dir / "projects" / project_code / "views"


@contextlib.contextmanager
def project_lock(directory: Path) -> Iterator[None]:
    """Hold the project's build lock: one build or removal of a project's views at a time (CLI,
    approval hook, enforcer and retention sweep may overlap). ``directory`` is ``views/.builds``."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def build_views(
    session: Session,
    actor: Actor,
    project_id: str,
    *,
    engine: BuildEngine = "arrow",
    spark: SparkSession | None = None,
    mode: StorageMode | None = None,
    sync_members: bool = True,
    withdraw_only: bool = False,
) -> ViewBuildResult:
    """Build, refresh or remove every view of a project, as the policy engine decides each one.

    Whether a view is still allowed is decided by the policies' conditions on the data (agreement,
    project state and dates, listing, tier), never by who asks: when ``actor``'s own ``build_view`` is
    refused but the enforcement identity's is allowed, the refusal is the actor's lack of rights and
    :class:`~tre_platform.errors.Forbidden` is raised before anything is touched.

    Args:
        session: database session; the audit events are added to it (the caller commits).
        actor: who asks (the operator, or an administrator); the policy decides ``build_view`` for them.
        project_id: project id or code.
        engine: ``arrow`` (default) or ``spark`` (uses ``spark`` or the active SparkSession).
        mode: storage separation; default ``TRE_STORAGE_MODE`` (``unix``, which needs root).
        sync_members: also make the project's Unix group exactly the members allowed to spawn.
        withdraw_only: enforcement: remove what is no longer allowed, build or rebuild nothing (a view
            still allowed keeps its files and build).

    Returns:
        One :class:`ViewOutcome` per dataset listed or found, and the group changes.

    Raises:
        NotFound: no such project.
        Forbidden: ``actor`` may not build views (nothing is touched).
        NotRootError: unix storage mode without root.
        ViewBuildError: a research version is missing or incomplete on disk.

    Example:
        >>> result = build_views(session, Actor.system("cli"), "P-2026-1A2B3C")   # doctest: +SKIP
        >>> [(o.dataset, o.action) for o in result.outcomes]                    # doctest: +SKIP
    """
    settings = get_settings()
    mode = mode or get_workspace_settings().storage_mode
    project = find_project(session, project_id)
    links = sorted(
        (
            (dataset, list(columns))
            for dataset, columns in (
                (session.get(Dataset, link.dataset_id), link.columns) for link in project.datasets
            )
            if dataset is not None
        ),
        key=lambda pair: pair[0].name,
    )
    if mode is StorageMode.unix:
        storage.require_root("building project views")
    data_dir = settings.ensure_data_dir()
    storage.harden_data_dir(data_dir, mode)
    target = storage.secure_project_dir(data_dir, project.code, mode)
    gid = (
        None
        if mode is StorageMode.insecure_single_user
        else storage.ensure_group(storage.project_group(project.code))
    )
    builds = target / BUILDS_DIR
    keys = _KeySource(settings, project)

    outcomes: list[ViewOutcome] = []
    with project_lock(builds):
        # Every decision first, under the lock (a concurrent enforcement cannot slip in between): an
        # actor's own lack of rights raises Forbidden here, before any view is touched.
        decisions = {
            dataset.id: _decide(session, actor, project, dataset, columns, quiet=withdraw_only)
            for dataset, columns in links
        }
        listed: set[str] = set()
        for dataset, columns in links:
            listed.add(dataset.name)
            outcomes.append(
                _one_view(
                    session,
                    actor,
                    project,
                    dataset,
                    columns,
                    target,
                    keys,
                    engine,
                    spark,
                    gid,
                    decisions[dataset.id],
                    withdraw_only,
                )
            )
        for stale in sorted(_published(target) - listed):
            _remove_view(target, stale)
            reason = f"dataset {stale} is no longer in the approval of project {project.code}"
            audit(session, actor, "view.remove", project, reasons=[reason], dataset=stale, kept=True)
            outcomes.append(ViewOutcome(stale, "removed", (reason,)))
        _collect_garbage(target)
        if gid is not None:
            os.chown(builds, 0, gid)
            builds.chmod(0o750)

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    if sync_members and mode is StorageMode.unix:
        added, removed = sync_project_members(session, actor, project, withdraw_only=withdraw_only)
    return ViewBuildResult(
        project=project.code,
        views_dir=target,
        outcomes=tuple(outcomes),
        members_added=added,
        members_removed=removed,
        storage_mode=mode.value,
    )


def _decide(
    session: Session,
    actor: Actor,
    project: Project,
    dataset: Dataset,
    columns: list[str],
    quiet: bool = False,
) -> Decision:
    """``build_view`` for ``actor``; a refusal that is the actor's own (the enforcement identity is
    allowed the same view) raises Forbidden instead of being taken for withdrawn access. ``quiet``
    (enforcement, which re-decides every minute): only a deny is audited."""
    decision = authorize(
        session, actor, "build_view", project=project, dataset=dataset, columns=columns, audit=not quiet
    )
    if quiet and not decision.allowed:
        decision = authorize(session, actor, "build_view", project=project, dataset=dataset, columns=columns)
    if decision.allowed or actor.is_enforcer:
        return decision
    check = authorize(
        session, Actor.enforcer(), "build_view", project=project, dataset=dataset, columns=columns
    )
    if check.allowed:
        raise Forbidden(
            f"{actor.label} may not build the views of project {project.code}: "
            + "; ".join(decision.reasons)
            + " (nothing was changed; view enforcement runs as the system's own identity)"
        )
    return check


def _one_view(
    session: Session,
    actor: Actor,
    project: Project,
    dataset: Dataset,
    columns: list[str],
    target: Path,
    keys: _KeySource,
    engine: BuildEngine,
    spark: SparkSession | None,
    gid: int | None,
    decision: Decision,
    withdraw_only: bool = False,
) -> ViewOutcome:
    present = (target / dataset.name).exists()
    if not decision.allowed:
        if present:
            _remove_view(target, dataset.name)
            audit(
                session,
                actor,
                "view.remove",
                project,
                reasons=list(decision.reasons),
                dataset=dataset.name,
                kept=True,  # the files are gone whatever becomes of the caller's transaction
            )
            return ViewOutcome(dataset.name, "removed", tuple(decision.reasons))
        return ViewOutcome(dataset.name, "denied", tuple(decision.reasons))

    version = newest_version(session, dataset)
    if version is None:
        if present:
            _remove_view(target, dataset.name)
        reason = f"dataset {dataset.name} has no published version yet; ingest a delivery first"
        return ViewOutcome(dataset.name, "no_version", (reason,))
    if withdraw_only:
        # Enforcement touches only what is no longer allowed: an allowed view keeps its build.
        return ViewOutcome(dataset.name, "kept" if present else "absent", tuple(decision.reasons))

    source = Path(version.path)
    if not (source / "_SUCCESS").exists():
        raise ViewBuildError(
            f"dataset {dataset.name} v{version.version} at {source} is incomplete (no _SUCCESS): "
            "re-run the ingest of that delivery"
        )
    files = parquet_parts(source)
    if not files:
        raise ViewBuildError(f"dataset {dataset.name} v{version.version} at {source} has no Parquet files")
    available = _parquet_columns(files[0])
    id_columns = [c for c in available if c in INDEX_ID_COLUMNS]
    approved = [c for c in dataset.column_names if c in columns and c in available and c not in id_columns]
    keep = id_columns + approved

    master_version = keys.master_version()
    if present:
        try:
            current = read_manifest(target / dataset.name)
        except (FileNotFoundError, ValueError):
            current = None
        if (
            current is not None
            and current.source_version_id == version.id
            and current.column_names == keep
            and current.key_version == project.key_version
            and current.master_key_version == master_version
        ):
            return ViewOutcome(
                dataset.name,
                "unchanged",
                tuple(decision.reasons),
                version.version,
                current.row_count,
                tuple(keep),
            )

    build_id = f"{clock.now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    staging = target / BUILDS_DIR / f".staging-{dataset.name}@{build_id}"
    staging.mkdir(parents=True)
    try:
        if engine == "spark":
            infos = _materialise_spark(files, staging, keep, id_columns, keys.project_key(), spark)
        else:
            infos = _materialise_arrow(files, staging, keep, id_columns, keys.project_key())
        schema = _parquet_schema(staging / infos[0].name) if infos else {}
        descriptions = {c["name"]: str(c.get("description", "")) for c in dataset.schema}
        manifest = ViewManifest(
            dataset=dataset.name,
            title=dataset.title,
            description=dataset.description,
            project=project.code,
            columns=tuple(
                ColumnInfo(
                    name=name,
                    type=schema.get(name, "string"),
                    description=(
                        f"{name.removesuffix('_id')} index ID, pseudonymised for project {project.code}: "
                        "joins with the project's other views, never with another project's"
                        if name in id_columns
                        else descriptions.get(name, "")
                    ),
                    project_id_column=name in id_columns,
                )
                for name in keep
            ),
            row_count=sum(i.rows for i in infos),
            files=tuple(infos),
            source_version=version.version,
            source_version_id=version.id,
            key_version=project.key_version,
            master_key_version=master_version,
            built_at=clock.now().isoformat(timespec="seconds"),
            engine=engine,
        )
        write_manifest(staging, manifest)
        (staging / "_SUCCESS").touch()
        final = target / BUILDS_DIR / f"{dataset.name}@{build_id}"
        os.rename(staging, final)
        storage.seal_tree(final, gid)
        _publish(target, dataset.name, final)
    except BaseException:
        storage.remove_tree(staging)
        raise
    audit(
        session,
        actor,
        "view.build",
        project,
        dataset=dataset.name,
        dataset_version=version.version,
        columns=keep,
        rows=manifest.row_count,
        key_version=project.key_version,
        master_key_version=master_version,
        engine=engine,
        agreement=decision.agreement,
    )
    return ViewOutcome(
        dataset.name, "built", tuple(decision.reasons), version.version, manifest.row_count, tuple(keep)
    )


# Publishing ----------------------------------------------------------------------------------------


def _published(target: Path) -> set[str]:
    if not target.is_dir():
        return set()
    return {p.name for p in target.iterdir() if not p.name.startswith(".")}


def _publish(target: Path, name: str, build: Path) -> None:
    """Point ``views/<name>`` at ``build`` with one atomic rename of a fresh symlink."""
    link = target / name
    tmp = target / f".{name}.{secrets.token_hex(4)}.link"
    os.symlink(os.path.relpath(build, target), tmp)
    if link.exists() and not link.is_symlink():
        # A plain directory (older layout): move it aside first, a symlink cannot replace it.
        os.rename(link, target / BUILDS_DIR / f".old-{name}-{secrets.token_hex(4)}")
    os.replace(tmp, link)


def remove_version_views(session: Session, actor: Actor, version_id: str, why: str) -> list[tuple[str, str]]:
    """Remove every published view built from dataset version ``version_id`` (archived or destroyed),
    each under its project's build lock so a concurrent build never republishes half a view.
    Returns the (project code, view name) pairs removed; each removal is audited."""
    removed: list[tuple[str, str]] = []
    for code, manifest in list_views(session):
        if manifest.source_version_id != version_id:
            continue
        target = views_dir(code)
        with project_lock(target / BUILDS_DIR):
            _remove_view(target, manifest.dataset)
        audit(
            session,
            actor,
            "view.remove",
            find_project(session, code),
            reasons=[why],
            dataset=manifest.dataset,
            dataset_version=manifest.source_version,
            kept=True,  # the view's files are gone even if the caller's step is rolled back
        )
        removed.append((code, manifest.dataset))
    return removed


def _remove_view(target: Path, name: str) -> None:
    link = target / name
    if link.is_symlink():
        build = (target / os.readlink(link)).resolve()
        link.unlink()
        storage.remove_tree(build)
    elif link.exists():
        storage.remove_tree(link)


def _collect_garbage(target: Path) -> None:
    """Delete builds no view points at any more (superseded or interrupted)."""
    builds = target / BUILDS_DIR
    if not builds.is_dir():
        return
    live = {(target / os.readlink(p)).resolve() for p in target.iterdir() if p.is_symlink()}
    for entry in builds.iterdir():
        if entry.name == ".lock":
            continue
        if entry.resolve() not in live:
            storage.remove_tree(entry)


# Engines -------------------------------------------------------------------------------------------


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _parquet_schema(path: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    return {f.name: str(f.type) for f in pq.read_schema(path)}


def _materialise_arrow(
    files: Sequence[Path], out_dir: Path, keep: list[str], id_columns: list[str], key: bytes
) -> list[FileInfo]:
    """Stream each research file through pyarrow in batches, re-keying the ID columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tre_lib.pseudonymise import HmacKey, hmac_sha256

    hmac_key = HmacKey(key)
    infos: list[FileInfo] = []
    for number, source in enumerate(files):
        reader = pq.ParquetFile(source)
        names = reader.schema_arrow.names
        missing = [c for c in keep if c not in names]
        if missing:
            raise ViewBuildError(
                f"{source} lacks columns {missing}; its version is inconsistent, re-ingest it"
            )
        schema = pa.schema(
            [pa.field(c, pa.string()) if c in id_columns else reader.schema_arrow.field(c) for c in keep]
        )
        out = out_dir / f"part-{number:05d}.parquet"
        rows = 0
        with pq.ParquetWriter(out, schema, compression="zstd") as writer:
            for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=keep):
                arrays = [
                    hmac_sha256(batch.column(c), hmac_key) if c in id_columns else batch.column(c)
                    for c in keep
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                rows += batch.num_rows
        infos.append(FileInfo(name=out.name, sha256=sha256_file(out), rows=rows))
    return infos


def _materialise_spark(
    files: Sequence[Path],
    out_dir: Path,
    keep: list[str],
    id_columns: list[str],
    key: bytes,
    spark: SparkSession | None,
) -> list[FileInfo]:
    """The same transformation as a Spark job (for versions too large for one machine)."""
    import pyarrow.parquet as pq
    from pyspark.sql import SparkSession

    from tre_lib.pseudonymise import spark_pseudonymise

    spark = spark or SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    frame = spark.read.parquet(*[str(f) for f in files]).select(*keep)
    frame = spark_pseudonymise(frame, id_columns, key) if id_columns else frame
    written = out_dir / "spark"
    frame.write.mode("errorifexists").option("compression", "zstd").parquet(str(written))
    infos: list[FileInfo] = []
    for number, part in enumerate(parquet_parts(written)):
        out = out_dir / f"part-{number:05d}.parquet"
        os.rename(part, out)
        infos.append(
            FileInfo(name=out.name, sha256=sha256_file(out), rows=pq.ParquetFile(out).metadata.num_rows)
        )
    storage.remove_tree(written)  # Spark's own _SUCCESS and .crc files
    return infos


# Listing and group membership ------------------------------------------------------------------------


def list_views(session: Session, project_id: str | None = None) -> list[tuple[str, ViewManifest]]:
    """(project code, manifest) of every published view, or of one project's."""
    settings = get_settings()
    projects = (
        [find_project(session, project_id)]
        if project_id
        else list(session.scalars(select(Project).order_by(Project.code)).unique())
    )
    out: list[tuple[str, ViewManifest]] = []
    for project in projects:
        target = views_dir(project.code, settings)
        for name in sorted(_published(target)):
            with contextlib.suppress(FileNotFoundError, ValueError):
                out.append((project.code, read_manifest(target / name)))
    return out


def sync_project_members(
    session: Session, actor: Actor, project: Project, *, withdraw_only: bool = False
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Make ``tre-p-<code>`` hold exactly the members the policy engine lets spawn a workspace now.

    Each member's ``spawn_workspace`` decision is audited; allowed members get their Unix user created
    if needed. Returns the Unix names (added, removed). ``withdraw_only`` (enforcement, every minute):
    only remove those no longer allowed, add nobody, and audit only the denies.
    """
    quiet = withdraw_only
    from tre_platform.api.users.models import User

    group = storage.project_group(project.code)
    storage.ensure_group(group)
    member_ids = {project.lead_id, *(m.user_id for m in project.members)}
    wanted: set[str] = set()
    for user_id in sorted(member_ids):
        user = session.get(User, user_id)
        if user is None:
            continue
        allowed = authorize(session, user, "spawn_workspace", project=project, audit=not quiet).allowed
        if quiet and not allowed:
            authorize(session, user, "spawn_workspace", project=project)  # a deny is always audited
        if allowed:
            name = storage.unix_username(user.username, user.unix_username)
            if not withdraw_only:
                storage.ensure_user(name, comment=f"tre researcher {user.username}")
            wanted.add(name)
    if withdraw_only:
        wanted &= storage.group_members(group)
    added, removed = storage.set_group_members(group, wanted)
    if added or removed:
        audit(
            session,
            actor,
            "workspace.group.sync",
            project,
            group=group,
            added=sorted(added),
            removed=sorted(removed),
        )
    return tuple(sorted(added)), tuple(sorted(removed))


def provision_user(session: Session, actor: Actor, user_id: str) -> str:
    """Create the researcher's Unix user (if missing) and record it on the account; return the name."""
    from tre_platform.api.users.models import User

    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id!r}")
    name = storage.unix_username(user.username, user.unix_username)
    storage.ensure_user(name, comment=f"tre researcher {user.username}")
    if user.unix_username != name:
        user.unix_username = name
        session.flush()
        audit(session, actor, "workspace.user.provision", user, unix_username=name)
    return name
