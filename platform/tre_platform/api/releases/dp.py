"""Differential privacy answered by the server: the query runs on the project's view, its budget is
debited and its noisy result stored in one database transaction.

A workspace sends the query (``POST /api/v1/projects/{id}/dp-queries``: view, statistic, column, bounds,
ε, δ); the server reads the view as it holds it (Polars, lazily: the same OpenDP mechanisms as
:mod:`tre_lib.privacy`), asks the ledger to debit the project's and the view's dataset's budget *before*
the data is read (OpenDP's ``before_release`` hook), computes, stores the result as a
:class:`~tre_platform.api.releases.models.DPQueryResult` and returns it. Over budget is refused (403
``budget_exceeded``) and nothing is charged or stored; any error after the debit rolls the whole
transaction back. A release request attaches a stored result by reference; nothing a notebook computes
with ``tre_lib.privacy`` is ever treated as differentially private at release.

The privacy unit is the view's unit (its first project id column): the server counts how many rows the
unit with the most rows has and uses at least that as OpenDP's ``contributions``, whatever the client says.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre_lib.compute import WorkspaceError
from tre_lib.compute import session as tre_session
from tre_lib.privacy import dp_count, dp_histogram, dp_mean, dp_quantile, dp_sum
from tre_platform.actor import Actor
from tre_platform.api.common import audit, check_user
from tre_platform.api.datasets.models import Dataset
from tre_platform.api.projects import service as projects
from tre_platform.api.projects.models import Project
from tre_platform.api.releases.budget import charge_dp
from tre_platform.api.releases.models import DPQueryResult
from tre_platform.api.releases.schemas import DPQueryCreate
from tre_platform.errors import InvalidInput, NotFound
from tre_platform.policy import require
from tre_platform.settings import Settings, get_settings
from tre_platform.views.builder import views_dir


def view_dataset(session: Session, project: Project, view: str) -> str:
    """The id of the project's dataset a view was built from (views are named after their dataset)."""
    listed = [link.dataset_id for link in project.datasets]
    found = session.scalar(select(Dataset.id).where(Dataset.name == view, Dataset.id.in_(listed or [""])))
    if found is None:
        raise InvalidInput(f"project {project.code} has no view {view!r}", field="view")
    return str(found)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dicts"):  # polars
        return [{k: _jsonable(v) for k, v in row.items()} for row in value.to_dicts()]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas
        return [{k: _jsonable(v) for k, v in row.items()} for row in value.to_dict(orient="records")]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def run_query(
    session: Session, actor: Actor, project_id: str, query: DPQueryCreate, settings: Settings | None = None
) -> DPQueryResult:
    """Answer a DP query on the project's view, debit the budget and store the result (one transaction).

    Raises:
        BudgetExceeded: the project's or the dataset's budget cannot afford it (nothing is charged).
        PolicyDenied: the actor may not read the view's dataset in this project.
        InvalidInput: unknown view or column, missing bounds, or parameters OpenDP refuses.
    """
    settings = settings or get_settings()
    check_user(actor)
    project = projects.get_project(session, actor, project_id)
    dataset_id = view_dataset(session, project, query.view)
    require(session, actor, "read_dataset", project=project, dataset=dataset_id)
    try:
        workspace = tre_session(project.code, views_dir=views_dir(project.code, settings))
        info = workspace.dataset(query.view)
        id_columns = [c.name for c in info.columns if c.project_id_column]
        columns = [c for c in dict.fromkeys([query.column, *id_columns[:1]]) if c]
        if query.statistic == "count" and not columns:
            columns = [info.columns[0].name]
        frame = workspace.read(info.name, engine="polars", columns=columns)
    except WorkspaceError as exc:
        raise InvalidInput(str(exc), field="view") from None
    # The privacy unit: at least as many rows as the unit with the most rows holds.
    contributions = 1
    if id_columns and frame.height:
        contributions = int(frame.group_by(id_columns[0]).len()["len"].max() or 1)
    description = query.description or f"dp {query.statistic} on {info.name}"
    charged: dict[str, str] = {}

    def debit(epsilon: float, delta: float) -> None:
        entries = charge_dp(session, actor, project.id, [dataset_id], epsilon, delta, description)
        charged["id"] = entries[0].charge_id

    data = frame.drop(id_columns[:1]) if id_columns and id_columns[0] != query.column else frame
    common: dict[str, Any] = {"contributions": contributions, "before_release": debit}
    try:
        if query.statistic == "count":
            result = dp_count(data, query.epsilon, column=query.column, delta=query.delta, **common)
        elif query.statistic == "histogram":
            if query.column is None or not query.categories:
                raise InvalidInput("a histogram needs column and categories", field="categories")
            result = dp_histogram(data, query.column, query.categories, query.epsilon, **common)
        else:
            if query.column is None:
                raise InvalidInput(f"a DP {query.statistic} needs a column", field="column")
            if query.statistic == "quantile":
                if query.q is None:
                    raise InvalidInput("a DP quantile needs q", field="q")
                result = dp_quantile(
                    data,
                    query.column,
                    query.q,
                    query.epsilon,
                    bounds=query.bounds,
                    delta=query.delta,
                    **common,
                )
            else:
                if query.bounds is None:
                    raise InvalidInput(f"a DP {query.statistic} needs bounds", field="bounds")
                mechanism = dp_sum if query.statistic == "sum" else dp_mean
                result = mechanism(
                    data, query.column, query.bounds, query.epsilon, delta=query.delta, **common
                )
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"the DP query is not valid: {exc}", field="statistic") from None
    stored = DPQueryResult(
        project_id=project.id,
        requester_id=actor.user_id or "",
        view=info.name,
        dataset_id=dataset_id,
        query=query.model_dump(mode="json"),
        epsilon=float(result.epsilon),
        delta=float(result.delta),
        result={
            "statistic": result.statistic,
            "value": _jsonable(result.value),
            "mechanism": result.mechanism,
            "accuracy": _jsonable(result.accuracy),
            "accuracy_unit": result.accuracy_unit,
            "alpha": result.alpha,
            "contributions": result.contributions,
            "engine": "polars",
        },
        charge_id=charged.get("id", ""),
    )
    session.add(stored)
    session.flush()
    audit(
        session,
        actor,
        "privacy.query",
        project,
        result_id=stored.id,
        view=info.name,
        statistic=query.statistic,
        epsilon=stored.epsilon,
        delta=stored.delta,
        charge_id=stored.charge_id,
    )
    return stored


def get_result(session: Session, actor: Actor, project_id: str, result_id: str) -> DPQueryResult:
    """One stored DP result of a project the actor can see."""
    project = projects.get_project(session, actor, project_id)
    found = session.get(DPQueryResult, result_id)
    if found is None or found.project_id != project.id:
        raise NotFound(f"project {project.code} has no DP result {result_id!r}")
    return found


def result_document(result: DPQueryResult) -> bytes:
    """The file a release carries for a stored DP result: the server's own value, as JSON."""
    return json.dumps(
        {
            "dp_result_id": result.id,
            "view": result.view,
            "query": result.query,
            "epsilon": result.epsilon,
            "delta": result.delta,
            "result": result.result,
            "computed_at": result.created_at.isoformat(),
        },
        indent=2,
        sort_keys=True,
    ).encode()
