"""The catalogue, and for a dataset's own data owners its versions: schema, quality and match quality;
registering a dataset and ingesting a delivery from the browser.

The catalogue (names, schemas, tiers) is for every signed-in user; versions, their quality dimensions,
match-quality reports and charts only for the owner organisation's data owners and administrators (the
datasets service says 'not found' to anyone else).

Registration goes through ``datasets.register_dataset`` (the API's service) and an upload through the
ingest pipeline's ``store_upload`` and ``ingest_upload``, so the policy engine decides ``ingest_dataset``
exactly as for the API and the CLI. A delivery with problems is shown back with every problem, its rows
and column, and nothing is published.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload

from tre_platform.api.agreements import service as agreements
from tre_platform.api.common import can_manage_org_data
from tre_platform.api.datasets import service as datasets
from tre_platform.api.datasets.models import Dataset, DatasetVersion, IndexKind, OnUnmatched
from tre_platform.api.datasets.schemas import ColumnType, DatasetCreate
from tre_platform.api.deps import Auth, DbSession, PathId
from tre_platform.api.orgs import service as orgs
from tre_platform.api.orgs.models import Organisation
from tre_platform.errors import Forbidden, InvalidInput, NotFound, PolicyDenied, TreError
from tre_platform.pipelines import DeliveryInvalid, ingest_upload, store_upload
from tre_platform.pipelines.errors import DeliveryTooLarge
from tre_platform.pipelines.ingest import check_can_ingest
from tre_platform.pipelines.report import LINKED
from tre_platform.ui.pages.home import owned_org_ids
from tre_platform.ui.web import (
    FORM_ERRORS,
    GENERAL,
    CheckedForm,
    PageAuth,
    checked,
    field_of,
    form_failure,
    given,
    redirect,
    render,
    settings_of,
    values,
)

router = APIRouter(prefix="/datasets")


@router.get("")
def dataset_list(request: Request, session: DbSession, auth: PageAuth, mine: str | None = None) -> Response:
    owned = owned_org_ids(auth.user)
    found = datasets.list_datasets(session, auth.actor, limit=500)
    if mine and owned:
        found = [d for d in found if d.owner_org_id in owned]
    return render(request, "datasets/list.html", {"datasets": found, "owned": owned, "mine": bool(mine)})


#: Chart files shown as images; any other chart (Splink's offline HTML charts) goes in a sandboxed frame.
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg")


def _charts(version: DatasetVersion) -> dict[str, dict[str, dict[str, Any]]]:
    """index kind -> chart name -> its URL (served by :func:`chart`) and whether it is an image."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, report in (version.match_report or {}).items():
        for name, raw in ((report.get("charts") or {}) if isinstance(report, dict) else {}).items():
            out.setdefault(kind, {})[name] = {
                "url": f"/datasets/{version.dataset_id}/versions/{version.version}/charts/{kind}/{name}",
                "image": str(raw).lower().endswith(IMAGE_SUFFIXES),
            }
    return out


def _match_rate(report: dict[str, Any]) -> float:
    return float(sum((report.get("rates") or {}).get(method, 0.0) for method in LINKED))


# Registering a dataset ----------------------------------------------------------------------------

#: Blank column rows a new registration form starts with (more are added with "Add more columns").
START_ROWS = 6
MORE_ROWS = 3
MAX_ROWS = 200
COLUMN_FIELDS = ("name", "type", "description", "allowed", "index", "min", "max")
COLUMN_TYPES = [(t.value, t.value) for t in ColumnType]
INDEX_KINDS = [(k.value, f"{k.value} index") for k in IndexKind]
TIERS = [(str(t), f"Tier {t}") for t in range(5)]
ON_UNMATCHED = [(o.value, o.value.replace("_", " ")) for o in OnUnmatched]


def _owner_orgs(session: Session, auth: Auth) -> list[Organisation]:
    """Organisations whose datasets this user may register (admins: every data-owning organisation)."""
    found = orgs.list_orgs(session, auth.actor, limit=500)
    return [o for o in found if o.owns_data and can_manage_org_data(auth.actor, o.id)]


def _rows(form: FormData) -> int:
    raw = form.get("rows")
    count = int(raw) if isinstance(raw, str) and raw.isdigit() else START_ROWS
    return max(1, min(count, MAX_ROWS))


def _column_values(form: FormData, rows: int) -> list[dict[str, Any]]:
    """Each column row as typed (kept to show the form again)."""
    out = []
    for i in range(rows):
        row: dict[str, Any] = {f: str(form.get(f"c{i}_{f}") or "").strip() for f in COLUMN_FIELDS}
        row["required"] = checked(form, f"c{i}_required")
        row["identifier"] = checked(form, f"c{i}_identifier")
        out.append(row)
    return out


def _bound(text: str, kind: str) -> float | str | None:
    """A min/max as the schema wants it: a number for numeric columns, the ISO text for dates."""
    if not text:
        return None
    if kind in ("integer", "float"):
        try:
            return float(text) if "." in text or "e" in text.lower() else int(text)
        except ValueError:
            return text  # the schema says why a bound of a numeric column must be a number
    return text


def _column_specs(columns: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The filled-in rows as ``ColumnSpec`` input, and the form row of each (blank rows are skipped)."""
    specs, where = [], []
    for i, c in enumerate(columns):
        if not c["name"]:
            continue
        spec: dict[str, Any] = {
            "name": c["name"],
            "type": c["type"] or "string",
            "required": c["required"],
            "description": c["description"],
            "identifier": c["identifier"],
        }
        if c["allowed"]:
            spec["allowed"] = [v.strip() for v in c["allowed"].split(",") if v.strip()]
        if c["index"]:
            spec["index"] = c["index"]
        for bound in ("min", "max"):
            value = _bound(c[bound], spec["type"])
            if value is not None:
                spec[bound] = value
        specs.append(spec)
        where.append(i)
    return specs, where


def _schema_errors(exc: ValidationError, where: list[int], fields: list[str]) -> dict[str, str]:
    """pydantic's errors with each column's error placed next to the field of its form row."""
    out: dict[str, str] = {}
    other = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        if len(loc) >= 2 and loc[0] == "schema" and loc[1].isdigit() and int(loc[1]) < len(where):
            row = where[int(loc[1])]
            message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
            name = loc[2] if len(loc) > 2 else (_field_of_column(message) or "name")
            out.setdefault(f"c{row}_{name}", message)
        else:
            other.append(error)
    for error in other:
        # The dataset's own fields (and model-wide checks, placed on the field they name).
        loc = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        if error.get("type") == "missing" or (
            error.get("type") == "string_too_short" and (error.get("ctx") or {}).get("min_length") == 1
        ):
            message = "this field is required"
        name = loc[0] if loc else (field_of(message, fields) or GENERAL)
        out.setdefault("columns" if name == "schema" else name, message)
    return out


def _field_of_column(message: str) -> str | None:
    for name in ("index", "allowed", "min", "max", "identifier"):
        if re.search(rf"\b{name}\b", message):
            return "identifier" if name == "identifier" else name
    return None


def _register_page(
    request: Request,
    session: Session,
    auth: Auth,
    *,
    data: dict[str, Any] | None = None,
    columns: list[dict[str, Any]] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    owners = _owner_orgs(session, auth)
    if not owners:
        raise Forbidden(
            "only a data owner (of a data-owning organisation) or an administrator may register datasets"
        )
    blank = {"type": "string", "required": True, "identifier": False}
    cols = columns or [dict(blank) for _ in range(START_ROWS)]
    return render(
        request,
        "datasets/new.html",
        {
            "owners": [(o.id, o.name) for o in owners],
            "columns": cols,
            "types": COLUMN_TYPES,
            "index_kinds": INDEX_KINDS,
            "tiers": TIERS,
            "on_unmatched": ON_UNMATCHED,
            "values": data or {"tier": "2", "on_unmatched": "report", "owner_org_id": owners[0].id},
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/new")
def new_dataset_page(request: Request, session: DbSession, auth: PageAuth) -> Response:
    return _register_page(request, session, auth)


@router.post("/new")
def register(request: Request, session: DbSession, auth: PageAuth, form: CheckedForm) -> Response:
    data = values(form, "name", "title", "description", "owner_org_id", "tier", "topics", "on_unmatched")
    rows = _rows(form)
    columns = _column_values(form, rows)
    if form.get("more"):
        # "Add more columns": the same form with blank rows added; nothing is saved.
        columns += [{"type": "string", "required": True, "identifier": False} for _ in range(MORE_ROWS)]
        return _register_page(request, session, auth, data=data, columns=columns[:MAX_ROWS])
    specs, where = _column_specs(columns)
    fields = ["name", "title", "description", "owner_org_id", "tier", "topics", "on_unmatched", "columns"]
    errors: dict[str, str] = {}
    if not specs:
        errors["columns"] = "describe at least one column: its name and type"
    if not errors:
        try:
            body = DatasetCreate.model_validate(
                given(
                    {
                        "name": data["name"],
                        "title": data["title"],
                        "description": data["description"],
                        "owner_org_id": data["owner_org_id"],
                        "tier": data["tier"],
                        "on_unmatched": data["on_unmatched"],
                        "topics": [t.strip() for t in data["topics"].split(",") if t.strip()],
                        "schema": specs,
                    }
                )
            )
            dataset = datasets.register_dataset(session, auth.actor, body)
        except ValidationError as exc:
            session.rollback()
            errors = _schema_errors(exc, where, fields)
        except FORM_ERRORS as exc:
            errors = form_failure(session, exc, fields)
    if errors:
        return _register_page(
            request, session, auth, data=data, columns=columns, errors=errors, status_code=422
        )
    return redirect(
        request,
        f"/datasets/{dataset.id}",
        f"Dataset {dataset.name} is registered. Upload its first delivery when it is ready.",
    )


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
    if resolved.suffix.lower() in IMAGE_SUFFIXES:
        return FileResponse(resolved)
    # An HTML chart runs its own scripts (Vega): in an opaque origin, so it can never act as the user.
    return FileResponse(
        resolved,
        headers={"Content-Security-Policy": "sandbox allow-scripts", "X-Content-Type-Options": "nosniff"},
    )


# Ingesting a delivery -----------------------------------------------------------------------------

#: Bytes read from the browser's upload at a time (memory stays at one chunk).
UPLOAD_CHUNK = 1024 * 1024


def upload_size_ok(request: Request) -> None:
    """Refuse an upload larger than ``TRE_MAX_UPLOAD_BYTES`` before any of it is read.

    Browsers always send the length of a form's body; one without it is refused rather than read
    without a bound (the pages' route is exempt from the API's request-body limit).
    """
    limit = settings_of(request).max_upload_bytes
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise InvalidInput("the upload came without its length; use the form on this page", field="file")
    if int(declared) > limit + 64 * 1024:  # the form's other fields and multipart framing
        raise DeliveryTooLarge(limit, int(declared))


def _upload_page(
    request: Request,
    dataset: Dataset,
    *,
    errors: dict[str, str] | None = None,
    report: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "datasets/upload.html",
        {
            "dataset": dataset,
            "errors": errors or {},
            "report": report,
            "max_upload": settings_of(request).max_upload_bytes,
        },
        status_code=status_code,
    )


@router.get("/{dataset_id}/upload")
def upload_page(request: Request, dataset_id: PathId, session: DbSession, auth: PageAuth) -> Response:
    dataset = datasets.get_dataset(session, auth.actor, dataset_id)
    # The policy engine's answer up front (a deny is audited and shown with its reasons).
    check_can_ingest(session, auth.actor, dataset.id)
    return _upload_page(request, dataset)


@router.post("/{dataset_id}/upload", dependencies=[Depends(upload_size_ok)])
def upload(
    request: Request, dataset_id: PathId, session: DbSession, auth: PageAuth, form: CheckedForm
) -> Response:
    dataset = datasets.get_dataset(session, auth.actor, dataset_id)
    check_can_ingest(session, auth.actor, dataset.id)
    file = form.get("file")
    if not isinstance(file, StarletteUpload) or not file.filename:
        return _upload_page(
            request, dataset, errors={"file": "choose the delivery file (CSV or Parquet)"}, status_code=422
        )
    settings = settings_of(request)
    name = dataset.name
    try:
        stored = store_upload(
            iter(lambda: file.file.read(UPLOAD_CHUNK), b""),
            filename=file.filename,
            max_bytes=settings.max_upload_bytes,
            settings=settings,
        )
        version = ingest_upload(session, auth.actor, name, stored)
    except DeliveryInvalid as exc:
        # Every problem with its rows and column; nothing was published (the pipeline rolled back).
        session.rollback()
        return _upload_page(
            request,
            dataset,
            errors={"file": exc.message.split(": ", 1)[0] + ": see the problems listed below"},
            report=exc.report.to_dict(),
            status_code=422,
        )
    except PolicyDenied:
        raise
    except TreError as exc:
        session.rollback()
        return _upload_page(request, dataset, errors={"file": exc.message}, status_code=exc.status_code)
    return redirect(
        request,
        f"/datasets/{dataset_id}#h-v{version.version}",
        f"Published {name} version {version.version} ({version.row_count} rows).",
    )
