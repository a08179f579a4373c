"""Ingest a delivery: policy → landing → validate → link → pseudonymise → quality → publish → catalogue.

``ingest()`` is the one entry point: the CLI calls it with a path; the API and the upload page stream the
body with ``delivery.store_upload`` (or ``DeliveryUpload``/``MultipartUpload``) and call
:func:`ingest_upload`, after :func:`check_can_ingest` has refused early whoever may not ingest. Its
guarantees:

* The policy engine decides ``ingest_dataset`` first (and audits the decision).
* A delivery with any problem raises :class:`DeliveryInvalid` listing every problem; nothing is published.
* Nothing partial is ever visible: parts are written to a hidden staging directory, renamed to ``v<N>``
  in one step, and only then is the ``DatasetVersion`` row committed; any failure removes the directory.
* Every attempt is audited: a success in the transaction that creates the version, a failure in a
  transaction of its own (the caller's is rolled back).
* A crash, even ``kill -9``, leaves at most a hidden staging directory or an uncatalogued ``v<N>``; the
  next ingest of the dataset removes both (see :mod:`tre_platform.pipelines.publish`), and the same
  delivery can simply be ingested again.

Note that this function commits ``session`` (twice: after the policy decision, so the long run holds no
database lock, and to publish).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.audit.service import record
from tre_platform.api.common import check_user
from tre_platform.api.datasets.models import Dataset, DatasetVersion
from tre_platform.clock import clock
from tre_platform.errors import Conflict, NotFound, PolicyDenied, TreError
from tre_platform.pipelines import publish
from tre_platform.pipelines.delivery import Delivery, StoredDelivery, discard_upload, receive, sweep_uploads
from tre_platform.pipelines.engines import IngestEngine, PandasEngine, output_schema
from tre_platform.pipelines.errors import DeliveryInvalid
from tre_platform.pipelines.linkage import identifier_groups, link, rewrite_paths
from tre_platform.pipelines.validation import rules_for
from tre_platform.settings import Settings, get_settings

log = logging.getLogger(__name__)

EngineName = Literal["auto", "pandas", "spark", "dask"]
ENGINES = ("auto", "pandas", "spark", "dask")
#: With engine="auto", deliveries at least this large run on Spark (smaller ones on pandas).
AUTO_SPARK_BYTES = 256 * 1024 * 1024
#: On the Spark engine, Splink runs on Spark from this many rows (below, DuckDB is faster on one machine:
#: Splink's Spark backend runs dozens of small jobs to train a model).
SPLINK_SPARK_MIN_ROWS = 500_000
STAGES = ("receive", "validate", "link", "pseudonymise", "quality", "write", "publish")

Progress = Callable[[str], None]


def find_dataset(session: Session, name: str) -> Dataset:
    """A dataset by name (or id).

    Raises:
        NotFound: No such dataset.
    """
    dataset = session.scalar(select(Dataset).where(Dataset.name == name)) or session.get(Dataset, name)
    if dataset is None:
        raise NotFound(f"no dataset named {name!r}; `tre dataset list` shows the registered datasets")
    return dataset


def check_can_ingest(session: Session, actor: Actor, dataset_name: str) -> Dataset:
    """Refuse early, before an upload is received, anyone :func:`ingest` would refuse.

    A deny is audited (as :func:`ingest`'s own decision would be); an allow is not, since ``ingest``
    decides and audits again when it runs. On an allow ``session`` is committed, so the upload that follows
    (minutes, for a large file) holds no database lock: a request's transaction may already hold SQLite's
    write lock (a token's ``last_used_at``).

    Raises:
        NotFound: Unknown dataset.
        PolicyDenied: The actor may not ingest this dataset.
    """
    from tre_platform.policy import authorize, require

    check_user(actor)
    dataset = find_dataset(session, dataset_name)
    if not authorize(session, actor, "ingest_dataset", dataset=dataset, audit=False).allowed:
        require(session, actor, "ingest_dataset", dataset=dataset)
    session.commit()
    return dataset


def choose_engine(engine: str, size: int, threshold: int = AUTO_SPARK_BYTES) -> str:
    """The engine for a delivery of ``size`` bytes: the one asked for, or by size with ``"auto"``."""
    if engine not in ENGINES:
        raise TreError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}", field="engine")
    if engine != "auto":
        return engine
    return "spark" if size >= threshold else "pandas"


def _make_engine(name: str, delivery: Delivery, rules: Any, spark: Any) -> IngestEngine:
    if name == "spark":
        from tre_platform.pipelines.spark_engine import SparkEngine, get_spark

        return SparkEngine(delivery, rules, spark or get_spark())
    if name == "dask":
        from tre_platform.pipelines.dask_engine import DaskEngine

        return DaskEngine(delivery, rules)
    return PandasEngine(delivery, rules)


def _read_truth(truth: str | Path | pd.DataFrame | None) -> pd.DataFrame | None:
    if truth is None or isinstance(truth, pd.DataFrame):
        return truth
    path = Path(truth)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"row": int})


@contextmanager
def _no_progress(stages: tuple[str, ...]) -> Iterator[Progress]:
    yield lambda _stage: None


@contextmanager
def rich_progress(stages: tuple[str, ...] = STAGES) -> Iterator[Progress]:
    """A rich progress bar that advances one step per pipeline stage (for the CLI)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("starting", total=len(stages))
        seen: list[str] = []

        def advance(stage: str) -> None:
            if seen:
                bar.advance(task)
            seen.append(stage)
            bar.update(task, description=stage)

        yield advance
        bar.update(task, completed=len(stages), description="published")


def _next_version(session: Session, dataset: Dataset) -> int:
    current = session.scalar(
        select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)
    )
    return int(current or 0) + 1


def _audit_failure(
    session: Session,
    actor: Actor,
    dataset: Dataset | None,
    name: str,
    error: BaseException,
    details: dict[str, Any],
) -> None:
    """Record a failed attempt in a transaction of its own (the caller's has been rolled back)."""
    reasons = [error.message if isinstance(error, TreError) else f"{type(error).__name__}: {error}"]
    if isinstance(error, DeliveryInvalid):
        details = {
            **details,
            "n_problems": error.report.n_problems,
            # Kinds and counts only: examples can hold values and never go into the audit log.
            "problems": [
                {"column": p.column, "problem": p.problem, "count": p.count}
                for p in error.report.problems[:50]
            ],
        }
    with Session(bind=session.get_bind()) as own:
        record(
            own,
            actor=actor.label[:64],
            action="dataset.ingest",
            target_type="datasets",
            target_id=dataset.id if dataset is not None else name[:64],
            decision="failure",
            reasons=[r[:2000] for r in reasons],
            details=details,
        )
        own.commit()


def ingest(
    session: Session,
    actor: Actor,
    dataset_name: str,
    path: str | Path | StoredDelivery,
    *,
    engine: EngineName | str = "auto",
    source_name: str | None = None,
    truth: str | Path | pd.DataFrame | None = None,
    allow_duplicate: bool = False,
    spark: Any = None,
    match_backend: str | None = None,
    progress: Callable[[tuple[str, ...]], Any] | None = None,
) -> DatasetVersion:
    """Validate, link, pseudonymise and publish a delivery as the dataset's next version.

    Args:
        session: Database session (committed by this function).
        actor: Who ingests; the policy engine decides ``ingest_dataset`` for them.
        dataset_name: The registered dataset (name or id).
        path: The delivery: a CSV with a header row (UTF-8) or a Parquet file; or a
            :class:`StoredDelivery` from ``store_upload``, which is moved (not copied) into place.
        engine: ``"pandas"``, ``"spark"``, ``"dask"``, or ``"auto"`` (by file size).
        source_name: Name recorded for the delivery (default: the file name).
        truth: Demo data only: ``row`` and ``<kind>_id`` columns (the surrogate id each row should link
            to); adds precision and recall to the match report.
        allow_duplicate: Publish even if an earlier version came from a byte-identical file.
        spark: SparkSession for the Spark engine (default: the active one, or a new one on
            ``settings.spark_master``).
        match_backend: Splink backend, ``"duckdb"`` or ``"spark"`` (default: Spark's on the Spark engine
            for deliveries of at least ``SPLINK_SPARK_MIN_ROWS`` rows, DuckDB otherwise).
        progress: A context-manager factory taking the stage names and yielding ``advance(stage)``
            (:func:`rich_progress` for a terminal); default silent.

    Returns:
        The committed :class:`DatasetVersion`.

    Raises:
        NotFound: Unknown dataset.
        PolicyDenied: The actor may not ingest this dataset (the reasons say why).
        DeliveryInvalid: The delivery breaks the schema; ``.report`` lists every problem.
        Conflict: The same file was already published (see ``allow_duplicate``), or a concurrent ingest
            published the same version number first.

    Example:
        >>> version = ingest(session, Actor.of(owner), "hospital_episodes", "episodes.csv")
        >>> version.version, version.row_count, version.match_report["demographic"]["rates"]
    """
    from tre_platform.policy import authorize

    check_user(actor)
    settings = get_settings()
    moved = isinstance(path, StoredDelivery)
    if isinstance(path, StoredDelivery):
        source_name = source_name or path.filename
        source = path.path
    else:
        source = Path(path)
    dataset = find_dataset(session, dataset_name)
    decision = authorize(session, actor, "ingest_dataset", dataset=dataset)
    if not decision.allowed:
        raise PolicyDenied(decision.message(), reasons=decision.reasons)
    # The allow is audited; commit it now so the long run below holds no database lock.
    session.commit()

    data_dir = settings.resolved_data_dir
    research_dir = data_dir / "research" / dataset.name
    reports_parent = data_dir / "linkage" / "reports" / dataset.name
    details: dict[str, Any] = {
        "dataset": dataset.name,
        "source": source_name or source.name,
        "bundle_hash": decision.bundle_hash,
    }
    staging: Path | None = None
    reports_staging: Path | None = None
    promoted: list[Path] = []
    claimed: list[Path] = []  # staging paths this ingest claimed (released in ``finally``)
    runner: IngestEngine | None = None
    factory = progress or _no_progress
    try:
        with factory(STAGES) as advance:
            advance("receive")
            rules = rules_for(dataset.schema)
            publish.sweep_claimed(data_dir / "landing" / dataset.name)
            delivery = receive(
                source,
                data_dir / "landing",
                dataset.name,
                max_bytes=settings.max_upload_bytes,
                rules=rules,
                source_name=source_name,
                move=moved,
            )
            claimed.append(delivery.path.parent)  # receive claimed the landing copy for this ingest
            details.update(sha256=delivery.sha256, bytes=delivery.size, format=delivery.format)
            if not allow_duplicate:
                same = session.scalar(
                    select(DatasetVersion.version).where(
                        DatasetVersion.dataset_id == dataset.id,
                        DatasetVersion.content_sha256 == delivery.sha256,
                    )
                )
                if same is not None:
                    raise Conflict(
                        f"this delivery is byte-identical to version {same} of {dataset.name}; nothing was "
                        "published (pass --allow-duplicate to publish it again)"
                    )
            engine_name = choose_engine(str(engine), delivery.size)
            details["engine"] = engine_name
            runner = _make_engine(engine_name, delivery, rules, spark)

            advance("validate")
            report = runner.load()
            if not report.ok:
                raise DeliveryInvalid(report)
            details["rows"] = runner.n_rows

            advance("link")
            groups = identifier_groups(rules)
            evidence = sorted({c for g in groups for c in g.inputs})
            # What a crashed ingest of this dataset left (even by kill -9) is removed first.
            publish.sweep_stale(reports_parent)
            reports_staging = publish.new_staging(reports_parent)
            claimed.append(reports_staging)
            reports_staging.mkdir(mode=0o700)
            backend = match_backend or (
                "spark" if engine_name == "spark" and runner.n_rows >= SPLINK_SPARK_MIN_ROWS else "duckdb"
            )
            linkage = link(
                runner.identifiers(evidence),
                groups,
                dataset=dataset.name,
                indexes_root=data_dir / "linkage" / "indexes",
                charts_root=reports_staging,
                threshold=dataset.match_threshold,
                on_unmatched=dataset.on_unmatched.value,
                backend=backend,
                spark=getattr(runner, "spark", None),
                truth=_read_truth(truth),
            )

            advance("pseudonymise")
            runner.attach(linkage.links)

            advance("quality")
            quality = runner.quality(groups, clock.today())

            advance("write")
            schema = output_schema(rules, groups)
            publish.sweep_stale(research_dir)
            staging = publish.new_staging(research_dir)
            claimed.append(staging)
            runner.write(staging, schema)

            advance("publish")
            with publish.dataset_lock(research_dir):
                # Under the lock no other ingest of this dataset is between rename and commit, so a v<N>
                # that no row points at was left by a crash and may be removed.
                version_number = _next_version(session, dataset)
                sealed = publish.seal(
                    staging,
                    {
                        "dataset": dataset.name,
                        "version": version_number,
                        "source_name": delivery.source_name,
                        "content_sha256": delivery.sha256,
                        "engine": engine_name,
                        "created_at": clock.now().isoformat(),
                        "index_columns": [g.id_column for g in groups],
                    },
                    [{"name": n, "type": str(t)} for n, t in schema],
                )
                target = research_dir / f"v{version_number}"
                reports_target = reports_parent / f"v{version_number}"
                publish.clear_orphan(target)
                publish.clear_orphan(reports_target)
                publish.promote(staging, target)
                promoted.append(target)
                staging = None
                publish.checkpoint("promoted")
                publish.promote(reports_staging, reports_target)
                promoted.append(reports_target)
                match_report = rewrite_paths(linkage.reports, reports_staging, reports_target)
                reports_staging = None
                (reports_target / "match_report.json").write_text(_json(match_report))
                (reports_target / "quality.json").write_text(_json(quality))
                version = DatasetVersion(
                    dataset_id=dataset.id,
                    version=version_number,
                    path=str(target),
                    row_count=sealed.row_count,
                    content_sha256=delivery.sha256,
                    quality=quality,
                    match_report=match_report,
                    source_name=delivery.source_name[:300],
                    created_by_id=actor.user_id,
                )
                session.add(version)
                session.flush()
                record(
                    session,
                    actor=actor.label[:64],
                    action="dataset.ingest",
                    target_type="dataset_versions",
                    target_id=version.id,
                    decision="success",
                    reasons=[f"published {dataset.name} v{version_number} ({sealed.row_count} rows)"],
                    details={
                        **details,
                        "version": version_number,
                        "path": str(target),
                        "match_rates": {k: r.get("rates") for k, r in match_report.items()},
                    },
                )
                session.commit()
            return version
    except BaseException as exc:
        session.rollback()
        for leftover in (staging, reports_staging, *promoted):
            if leftover is not None:
                publish.withdraw(leftover)
        try:
            _audit_failure(session, actor, dataset, dataset_name, exc, details)
        except Exception:  # the original error matters more; the audit failure is logged
            log.exception("could not audit the failed ingest of %s", dataset_name)
        raise
    finally:
        for path in claimed:
            publish.release_staging(path)
        if runner is not None:
            runner.close()


def sweep_ingest_leftovers(settings: Settings | None = None) -> list[Path]:
    """Remove what killed ingests left anywhere in the data directory; returns the removed paths.

    A landing copy, staging directory or uploaded part that no living process holds is a crashed run's
    (running ingests hold theirs with a ``flock`` the kernel drops when they die, however they die):
    landing copies under ``landing/<dataset>/``, staging under ``research/<dataset>/`` and
    ``linkage/reports/<dataset>/``, and dead uploads under ``landing/uploads/``. Finished ingests' landing
    copies and published versions are left alone. The next ingest of a dataset sweeps that dataset
    itself; this is for the scheduler of ``tre up``, to clean datasets nobody ingests again. Safe to run
    at any time, beside running ingests.

    Example:
        >>> sweep_ingest_leftovers()
        [PosixPath('/srv/tre/landing/episodes/3f2a9c0d1e4b5a69')]
    """
    data_dir = (settings or get_settings()).resolved_data_dir
    removed = sweep_uploads(data_dir / "landing" / "uploads")
    for parent in _children(data_dir / "landing"):
        if parent.name != "uploads":
            removed += publish.sweep_claimed(parent)
    for parent in [*_children(data_dir / "research"), *_children(data_dir / "linkage" / "reports")]:
        removed += publish.sweep_stale(parent)
    return removed


def _children(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def audit_refused_upload(session: Session, actor: Actor, dataset_name: str, error: BaseException) -> None:
    """Audit an upload refused before the pipeline saw it (too large, empty, malformed multipart), as
    :func:`ingest` audits its own failures, so every attempt is in the log."""
    dataset = session.scalar(select(Dataset).where(Dataset.name == dataset_name)) or session.get(
        Dataset, dataset_name
    )
    _audit_failure(session, actor, dataset, dataset_name, error, {"dataset": dataset_name, "stage": "upload"})


def ingest_upload(
    session: Session, actor: Actor, dataset_name: str, stored: StoredDelivery, **options: Any
) -> DatasetVersion:
    """:func:`ingest` a delivery that :func:`~tre_platform.pipelines.delivery.store_upload` received.

    The entry point for the API and the upload page. Whatever happens, the upload does not linger in
    ``landing/uploads``: on success (or a schema problem) it has moved to ``landing/<dataset>/``, on a
    refusal before that (policy, unknown dataset) it is removed. ``options`` are :func:`ingest`'s.

    Example:
        >>> stored = store_upload(chunks, filename="episodes.csv", max_bytes=s.max_upload_bytes, settings=s)
        >>> version = ingest_upload(session, actor, "hospital_episodes", stored)
    """
    try:
        return ingest(session, actor, dataset_name, stored, **options)
    finally:
        discard_upload(stored)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)
