"""The report of a published version: match quality per index and the quality dimensions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tre_platform.actor import Actor
from tre_platform.api.datasets.service import list_versions
from tre_platform.errors import NotFound
from tre_platform.pipelines.ingest import find_dataset

LINKED = ("deterministic", "probabilistic")


def _match_summary(report: dict[str, Any]) -> dict[str, Any]:
    accuracy = report.get("accuracy") or {}
    parameters = report.get("parameters") or []
    return {
        "id_column": report.get("id_column"),
        "columns": report.get("columns"),
        "n_records": report.get("n_records"),
        "counts": report.get("counts"),
        "rates": report.get("rates"),
        "match_rate": sum((report.get("rates") or {}).get(m, 0.0) for m in LINKED),
        "n_unlinkable": report.get("n_unlinkable"),
        "n_below_threshold": report.get("n_below_threshold"),
        "threshold": report.get("threshold"),
        "backend": report.get("backend"),
        "precision": accuracy.get("precision"),
        "recall": accuracy.get("recall"),
        "f1": accuracy.get("f1"),
        "m_u": [
            {k: p.get(k) for k in ("comparison", "level", "m_probability", "u_probability", "match_weight")}
            for p in parameters
        ],
        "notes": report.get("notes") or [],
        # How the model was trained, or that the dataset's saved model was reused.
        "training": report.get("training") or [],
        "charts": report.get("charts") or {},
        # Problems the data owner must see (an identifier its normaliser mostly blanked, ...).
        "findings": report.get("findings") or [],
        # How the records matching nothing were deduplicated into new index entries.
        "growth": report.get("growth") or {},
        # Precision and recall estimated from the match probabilities (no truth file needed).
        "estimated": report.get("estimated") or {},
        "blocking": report.get("blocking") or {},
        # Candidates between the review and the match thresholds, queued for a linkage reviewer.
        "review": report.get("review") or {},
    }


def dataset_report(
    session: Session, actor: Actor, dataset_name: str, version: int | None = None
) -> dict[str, Any]:
    """The match-quality report and quality dimensions of one version (default: the latest).

    Only the owner organisation's data owners and administrators see versions (as for ``list_versions``).

    Raises:
        NotFound: Unknown dataset, no such version, or the actor may not see versions of it.
    """
    dataset = find_dataset(session, dataset_name)
    versions = list_versions(session, actor, dataset.id)
    if not versions:
        raise NotFound(f"{dataset.name} has no published version yet; ingest a delivery first")
    chosen = versions[-1] if version is None else next((v for v in versions if v.version == version), None)
    if chosen is None:
        known = ", ".join(str(v.version) for v in versions)
        raise NotFound(f"{dataset.name} has no version {version}; its versions are {known}")
    match = {kind: _match_summary(report) for kind, report in (chosen.match_report or {}).items()}
    return {
        "dataset": dataset.name,
        "version": chosen.version,
        "row_count": chosen.row_count,
        "created_at": chosen.created_at.isoformat(),
        "source_name": chosen.source_name,
        "content_sha256": chosen.content_sha256,
        "path": chosen.path,
        "match": match,
        "quality": chosen.quality,
        "charts": sorted(path for m in match.values() for path in m["charts"].values()),
    }
