"""The database-backed :class:`tre_lib.disclosure.differencing.ReleaseLedger`, and the differencing check
of a submitted table against every table already released from the same project or dataset."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre_lib.disclosure import Rules
from tre_lib.disclosure.differencing import (
    CategoryFilter,
    DifferencingError,
    PublishedCell,
    ReleaseScope,
    UnitTable,
    check_differencing,
    check_unit_differencing,
)
from tre_lib.disclosure.differencing import ReleasedTable as ReleaseRecord
from tre_lib.disclosure.errors import DisclosureError
from tre_lib.disclosure.table import ProtectedTable
from tre_lib.outputs.specs import CellKey, TableSpec, label_text
from tre_platform.api.releases.files import read_blob, store_blob
from tre_platform.api.releases.models import (
    FileKind,
    ReleasedTable,
    ReleaseFile,
    ReleaseRequest,
    ReleaseState,
)
from tre_platform.clock import clock
from tre_platform.db.base import new_id
from tre_platform.settings import Settings


class SqlReleaseLedger:
    """Released tables in the ``released_tables`` table, inside the caller's transaction (append-only)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self,
        release: ReleaseRecord,
        *,
        request_id: str | None = None,
        file_id: str | None = None,
        units: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a released table; a duplicate release id is refused."""
        if self.session.get(ReleasedTable, release.release_id) is not None:
            raise DifferencingError(f"release {release.release_id!r} is already in the ledger")
        self.session.add(
            ReleasedTable(
                id=release.release_id,
                project_id=release.scope.project,
                dataset_key=release.scope.dataset,
                request_id=request_id,
                file_id=file_id,
                record={**release.as_dict(), **({"units": dict(units)} if units else {})},
                released_at=clock.now(),
            )
        )
        self.session.flush()

    def releases_for(self, scope: ReleaseScope) -> list[ReleaseRecord]:
        """Every stored release of the same project or of the same dataset, oldest first."""
        rows = self.session.scalars(
            select(ReleasedTable)
            .where(or_(ReleasedTable.project_id == scope.project, ReleasedTable.dataset_key == scope.dataset))
            .order_by(ReleasedTable.released_at, ReleasedTable.id)
        )
        return [ReleaseRecord.from_dict(row.record) for row in rows]


def subpopulation(spec: TableSpec, frame: pd.DataFrame) -> list[CategoryFilter]:
    """The table's filters as the categories they kept, read from the filtered data itself.

    Any operator (==, in, <, >= ...) becomes "the values of the column that remain", which is exactly the
    subpopulation the table counts, so tables filtered differently can be compared.
    """
    out = []
    for column in dict.fromkeys(f.column for f in spec.filters):
        kept = sorted(frame[column].dropna().unique().tolist(), key=lambda v: (type(v).__name__, v))
        out.append(CategoryFilter(column, tuple(kept)))
    return out


def release_record(
    protected: ProtectedTable,
    spec: TableSpec,
    frame: pd.DataFrame,
    scope: ReleaseScope,
    more_suppressed: Iterable[CellKey],
) -> ReleaseRecord:
    """The record of what will be published: the server's table, with the cells the submission hides
    also hidden (a researcher may suppress more than the rules require, never less)."""
    record = ReleaseRecord.from_protected(
        protected, scope, release_id="<new>", filters=subpopulation(spec, frame)
    )
    hidden = set(more_suppressed)
    n_rows = len(spec.index)
    if not hidden:
        return record

    def key(labels: tuple[Any, ...]) -> CellKey:
        rows = tuple(label_text(x) for x in labels[:n_rows])
        columns = tuple(label_text(x) for x in labels[n_rows:])
        return rows, columns

    one_way = {r for r, _c in hidden} if not spec.columns else set()
    cells = tuple(
        PublishedCell(c.labels, None)
        if key(c.labels) in hidden or (one_way and key(c.labels)[0] in one_way)
        else c
        for c in record.cells
    )
    return dataclasses.replace(record, cells=cells)


def differencing_findings(
    session: Session, record: ReleaseRecord, scope: ReleaseScope, rules: Rules
) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(status, findings in words, findings as data) of ``record`` against the project's past releases."""
    try:
        found = check_differencing(record, SqlReleaseLedger(session), scope, rules=rules)
    except DifferencingError as exc:
        return "review", [f"differencing could not be checked: {exc}"], []
    status = "pass"
    for finding in found:
        status = "fail" if finding.kind == "recoverable" else ("review" if status == "pass" else status)
    return status, [f"differencing: {f.message}" for f in found], [f.as_dict() for f in found]


def stored_record(check: dict[str, Any], released_at: str) -> ReleaseRecord | None:
    """The record kept at submission, with a fresh release id, ready to go into the ledger."""
    raw = (check.get("differencing") or {}).get("record")
    if raw is None:
        return None
    record = ReleaseRecord.from_dict(raw)
    return dataclasses.replace(record, release_id=new_id(), released_at=released_at)


# Differencing by unit incidence (tables recomputed from a view) ------------------------------------

#: Requests whose tables are "in flight": submitted, waiting for review, or approved but not released.
IN_FLIGHT_STATES = (ReleaseState.submitted, ReleaseState.in_review, ReleaseState.approved)


@dataclass(frozen=True)
class Incidence:
    """What the server knows about the rows of a table's source: a key per row and per unit, the
    universe they belong to (project and view), and the tables already out or in flight."""

    row_keys: np.ndarray
    unit_keys: np.ndarray
    universe: str
    others: list[UnitTable]
    table_id: str


def units_ref(settings: Settings, request_id: str, table: UnitTable) -> dict[str, Any]:
    """Store a table's incidence record in the request's blob store; returns the reference to keep."""
    return {
        "request_id": request_id,
        "sha256": store_blob(settings, request_id, table.to_bytes()),
        "universe": table.universe,
        "table_id": table.table_id,
    }


def load_units(settings: Settings, ref: Mapping[str, Any] | None) -> UnitTable | None:
    """The incidence record a reference points to (None for a table without one)."""
    if not ref or not ref.get("sha256") or not ref.get("request_id"):
        return None
    return UnitTable.from_bytes(read_blob(settings, str(ref["request_id"]), str(ref["sha256"])))


def released_unit_tables(session: Session, settings: Settings, project_id: str) -> list[UnitTable]:
    """Every table the project has released that carries an incidence record, oldest first."""
    rows = session.scalars(
        select(ReleasedTable)
        .where(ReleasedTable.project_id == project_id)
        .order_by(ReleasedTable.released_at, ReleasedTable.id)
    )
    out = []
    for row in rows:
        table = load_units(settings, (row.record or {}).get("units"))
        if table is not None:
            out.append(table)
    return out


def in_flight_unit_tables(
    session: Session, settings: Settings, project_id: str, exclude_request: str
) -> list[UnitTable]:
    """The tables of the project's other requests that are submitted, in review or approved."""
    files = session.scalars(
        select(ReleaseFile)
        .join(ReleaseRequest, ReleaseFile.request_id == ReleaseRequest.id)
        .where(
            ReleaseRequest.project_id == project_id,
            ReleaseRequest.state.in_(IN_FLIGHT_STATES),
            ReleaseRequest.id != exclude_request,
            ReleaseFile.kind == FileKind.table,
        )
        .order_by(ReleaseRequest.submitted_at, ReleaseFile.name)
    )
    out = []
    for item in files:
        table = load_units(settings, (item.server_check or {}).get("units"))
        if table is not None:
            out.append(table)
    return out


def unit_findings(
    new: UnitTable, others: Iterable[UnitTable], rules: Rules
) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(status, findings in words, findings as data) of ``new`` against the other tables."""
    try:
        found = check_unit_differencing(new, others, rules)
    except DisclosureError as exc:
        return "review", [f"differencing by units could not be checked: {exc}"], []
    if not found:
        return "pass", [], []
    status = "fail" if any(f.kind == "recoverable" for f in found) else "review"
    return status, [f"differencing: {f.message}" for f in found], [f.as_dict() for f in found]
