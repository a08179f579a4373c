"""The catalogue, and for a dataset's own data owners its versions: schema, quality and match quality.

The catalogue (names, schemas, tiers) is for every signed-in user; versions, their quality dimensions,
match-quality reports and charts only for the owner organisation's data owners and administrators (the
datasets service says 'not found' to anyone else).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from tre_platform.api.agreements import service as agreements
from tre_platform.api.common import can_manage_org_data
from tre_platform.api.datasets import service as datasets
from tre_platform.api.datasets.models import DatasetVersion
from tre_platform.api.deps import DbSession, PathId
from tre_platform.errors import NotFound
from tre_platform.pipelines.report import LINKED
from tre_platform.ui.pages.home import owned_org_ids
from tre_platform.ui.web import PageAuth, render, settings_of

router = APIRouter(prefix="/datasets")


@router.get("")
def dataset_list(request: Request, session: DbSession, auth: PageAuth, mine: str | None = None) -> Response:
    owned = owned_org_ids(auth.user)
    found = datasets.list_datasets(session, auth.actor, limit=500)
    if mine and owned:
        found = [d for d in found if d.owner_org_id in owned]
    return render(request, "datasets/list.html", {"datasets": found, "owned": owned, "mine": bool(mine)})


def _charts(version: DatasetVersion) -> dict[str, dict[str, str]]:
    """index kind -> chart name -> URL of the chart image (served by :func:`chart`)."""
    out: dict[str, dict[str, str]] = {}
    for kind, report in (version.match_report or {}).items():
        for name in (report.get("charts") or {}) if isinstance(report, dict) else {}:
            out.setdefault(kind, {})[name] = (
                f"/datasets/{version.dataset_id}/versions/{version.version}/charts/{kind}/{name}"
            )
    return out


def _match_rate(report: dict[str, Any]) -> float:
    return float(sum((report.get("rates") or {}).get(method, 0.0) for method in LINKED))


@router.get("/{dataset_id}")
def dataset_detail(request: Request, dataset_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    dataset = datasets.get_dataset(session, auth.actor, dataset_id)
    manages = can_manage_org_data(auth.actor, dataset.owner_org_id)
    versions = datasets.list_versions(session, auth.actor, dataset.id) if manages else []
    covering = (
        [
            a
            for a in agreements.list_agreements(
                session, auth.actor, owner_org_id=dataset.owner_org_id, limit=500
            )
            if a.all_datasets or dataset.id in a.dataset_ids
        ]
        if manages
        else []
    )
    return render(
        request,
        "datasets/detail.html",
        {
            "dataset": dataset,
            "manages": manages,
            "versions": list(reversed(versions)),
            "charts": {v.version: _charts(v) for v in versions},
            "match_rate": _match_rate,
            "agreements": covering,
            "status": agreements.status,
        },
    )


@router.get("/{dataset_id}/versions/{version}/charts/{kind}/{name}")
def chart(
    request: Request,
    dataset_id: PathId,
    version: int,
    kind: str,
    name: str,
    session: DbSession,
    auth: PageAuth,
) -> Response:
    """A match-quality chart image of a version (owner organisation's data owners and admins)."""
    found = next(
        (v for v in datasets.list_versions(session, auth.actor, dataset_id) if v.version == version), None
    )
    report = (found.match_report or {}).get(kind) if found is not None else None
    raw = ((report or {}).get("charts") or {}).get(name) if isinstance(report, dict) else None
    if not raw:
        raise NotFound("no such chart")
    data_dir = settings_of(request).resolved_data_dir
    path = Path(raw) if Path(raw).is_absolute() else data_dir / raw
    # Only files inside the data directory: a report is data, and data must not name arbitrary files.
    resolved = path.resolve()
    if not resolved.is_relative_to(data_dir) or not resolved.is_file():
        raise NotFound("the chart file is missing; re-run the ingest report")
    return FileResponse(resolved)
