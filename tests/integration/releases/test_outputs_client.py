"""The workspace library talks to the real control plane: stage, request, and the server's verdicts."""

from __future__ import annotations

import pytest
from airlock_world import Airlock, microdata, with_small_cell
from fastapi.testclient import TestClient

from tre_lib.disclosure import load_profile
from tre_lib.outputs import Airlock as Workspace
from tre_lib.outputs import AirlockError
from tre_platform.api.releases.checks import strictest


def _workspace(airlock: Airlock, client: TestClient, who: str = "researcher") -> Workspace:
    return Workspace("http://testserver", airlock.tokens[who], airlock.project_id, client=client)


def test_a_workspace_stages_a_table_and_a_regression_and_the_server_agrees(
    airlock: Airlock, client: TestClient
) -> None:
    workspace = _workspace(airlock, client)
    assert workspace.rules()["threshold"] == 10
    data = with_small_cell(microdata())
    table = workspace.table(
        data, "region", "sex", name="admissions.csv", dataset="hes", filters=[["age", ">=", 18]]
    )
    assert table.local_status == "review"  # the small west cells are suppressed locally
    model = workspace.regression(data, "cost", ["age"], categorical=["sex"], name="cost-model.csv")
    assert model.local_status == "pass"
    request = workspace.request_release("Admissions", "annual report")
    assert request["state"] == "in_review"
    statuses = {f["name"]: f["status"] for f in request["files"]}
    # Computed from data the workspace uploaded (no view named): never more than review.
    assert statuses == {"admissions.csv": "review", "cost-model.csv": "review"}
    assert workspace.staged == []


def test_the_workspace_sees_the_servers_refusals_in_words(airlock: Airlock, client: TestClient) -> None:
    outsider = _workspace(airlock, client, "outsider")
    with pytest.raises(AirlockError, match="no project") as refused:
        outsider.rules()
    assert refused.value.status_code == 404
    workspace = _workspace(airlock, client)
    workspace.charge([airlock.hes_id], 0.6, description="dp count")
    with pytest.raises(AirlockError, match=r"ε=0\.40 of 1\.00") as over:
        workspace.charge([airlock.hes_id], 0.6, description="another")
    assert over.value.body["error"] == "budget_exceeded"
    remaining = {b["scope_id"]: b["epsilon_remaining"] for b in workspace.budget()}
    assert remaining[f"{airlock.project_id}/{airlock.hes_id}"] == pytest.approx(0.4)
    with pytest.raises(AirlockError, match="nothing is staged"):
        workspace.request_release("empty")


def test_the_strictest_profile_wins_parameter_by_parameter() -> None:
    default, business, health = (load_profile(n) for n in ("default", "business-tier2", "health-tier3"))
    merged = strictest([default, business, health])
    assert merged.name == "business-tier2+default+health-tier3"
    assert merged.threshold == 10
    assert (merged.dominance_n, merged.dominance_k) == (2, 0.5)
    assert merged.p_percent == 0.15
    assert merged.protection_level == 0.20
    assert merged.zeros == "suppress"
    assert merged.missing == "review"
    rounded = strictest([load_profile("counts-rounded"), default])
    assert rounded.mitigation == "suppress"
    assert strictest([default]) is default
