"""The starter notebooks run top to bottom (nbclient) against a workspace's environment and views.

01 (Spark) and 02 (Dask) need only the views. 03 (a protected table sent to the airlock) and 04 (a
differentially private query) also talk to the control plane: for them the test starts the real one
(uvicorn in a subprocess on the test database, seeded with the demo world) and gives the notebook what the
hub gives a spawned server: the project's code, its views, the control plane's URL and a workspace token
of the demo researcher.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from compute_views import make_view
from nbclient import NotebookClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from workspace_processes import ControlPlane

TEMPLATES = Path(__file__).resolve().parents[3] / "notebooks_templates"
NEEDS_CONTROL_PLANE = ("03_protected_table_release.ipynb", "04_differential_privacy.ipynb")
VIEWS_ONLY = sorted(p.name for p in TEMPLATES.glob("*.ipynb") if p.name not in NEEDS_CONTROL_PLANE)


def write_views(views: Path, project: str) -> Path:
    """The demo project's views (hospital episodes, the LFS) and a product-safety view, pseudonymous."""
    rng = np.random.default_rng(3)
    ids = [f"{i:064x}" for i in range(400)]
    # Three common chapters and a rare one (four people): a table by chapter has cells to suppress.
    chapters = np.concatenate([rng.choice(["II", "IX", "X"], 296), ["XV"] * 4])
    make_view(
        views,
        "hospital_episodes",
        pd.DataFrame(
            {
                "demographic_id": ids[:300],
                "sex": rng.choice(["F", "M"], 300),
                "diagnosis_chapter": chapters,
                "length_of_stay": rng.integers(0, 30, 300),
                "admission_method": rng.choice(["elective", "emergency"], 300),
            }
        ),
        project=project,
    )
    make_view(
        views,
        "labour_force_survey",
        pd.DataFrame(
            {"demographic_id": ids[100:], "employment_status": rng.choice(["employed", "inactive"], 300)}
        ),
        project=project,
    )
    make_view(
        views,
        "product_safety_incidents",
        pd.DataFrame(
            {
                "business_id": ids[:250],
                "product_category": rng.choice(["toys", "electrical", "cosmetics"], 250),
                "severity": rng.choice(["low", "high", "serious"], 250),
            }
        ),
        project=project,
        ids=("business_id",),
    )
    return views


def workspace_environ(monkeypatch: pytest.MonkeyPatch, project: str, views: Path) -> None:
    """The variables the hub sets for tre_lib.session(), with Spark and Dask kept small for CI."""
    monkeypatch.setenv("TRE_PROJECT", project)
    monkeypatch.setenv("TRE_VIEWS_DIR", str(views))
    monkeypatch.setenv("TRE_SPARK_MASTER", "local[1]")
    monkeypatch.setenv(
        "TRE_SPARK_CONF", json.dumps({"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"})
    )
    monkeypatch.setenv("TRE_DASK_WORKERS", "1")
    monkeypatch.setenv("TRE_DASK_THREADS", "1")


def run_notebook(name: str, cwd: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(TEMPLATES / name, as_version=4)
    NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    assert any(c.outputs for c in notebook.cells if c.cell_type == "code")
    return notebook


def output_text(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", VIEWS_ONLY)
def test_a_starter_notebook_runs_top_to_bottom(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = write_views(tmp_path / "views", "P-1")
    workspace_environ(monkeypatch, "P-1", views)
    run_notebook(name, tmp_path)


@pytest.fixture
def airlock_workspace(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ControlPlane:
    """A workspace environment as the hub sets it (no TRE_PROJECT_ID: the code is enough), on the views
    the control plane holds for the project (it recomputes a table from the view its spec names)."""
    from tre_platform.views.builder import views_dir

    views = write_views(views_dir(control_plane.project_code), control_plane.project_code)
    workspace_environ(monkeypatch, control_plane.project_code, views)
    monkeypatch.setenv("TRE_API_URL", control_plane.url)
    monkeypatch.setenv("TRE_API_TOKEN", control_plane.token)
    monkeypatch.delenv("TRE_PROJECT_ID", raising=False)
    return control_plane


@pytest.mark.slow
def test_the_release_notebook_submits_a_protected_table_to_the_airlock(
    airlock_workspace: ControlPlane, session: Session, tmp_path: Path
) -> None:
    from tre_platform.api.releases.models import ReleaseRequest, ReleaseState

    notebook = run_notebook("03_protected_table_release.ipynb", tmp_path)
    assert "status: review" in output_text(notebook)  # the rare chapter's cells were suppressed
    session.expire_all()
    (request,) = session.scalars(
        select(ReleaseRequest).where(ReleaseRequest.project_id == airlock_workspace.project_id)
    ).all()
    assert request.state is ReleaseState.in_review
    assert request.requester.username == "alice"
    (staged,) = request.files
    assert staged.name == "episodes-by-chapter.csv"
    assert staged.spec["index"] == ["diagnosis_chapter"] and staged.spec["dataset"] == "hospital_episodes"
    # The server recomputed the table from its own copy of the view, not from the submitted rows, and
    # agrees with the workspace's suppression.
    assert staged.server_check["record"]["source"]["recomputed_from_source"] is True
    assert request.check_status == "review"


@pytest.mark.slow
def test_the_privacy_notebook_charges_the_ledger_and_is_refused_over_budget(
    airlock_workspace: ControlPlane, session: Session, tmp_path: Path
) -> None:
    from tre_platform.api.releases.models import DPQueryResult, PrivacyLedgerEntry

    notebook = run_notebook("04_differential_privacy.ipynb", tmp_path)
    text = output_text(notebook)
    assert "with 95% confidence" in text
    # The over-budget query is refused in words, not with a traceback.
    assert "the control plane refused" in text and "Nothing was charged or released" in text
    session.expire_all()
    entries = session.scalars(
        select(PrivacyLedgerEntry).where(PrivacyLedgerEntry.project_id == airlock_workspace.project_id)
    ).all()
    # Two queries, each charged to the project and to the dataset; the refused one charged nothing.
    assert sorted(e.scope_kind for e in entries) == ["dataset", "dataset", "project", "project"]
    assert 0 < sum(e.epsilon for e in entries if e.scope_kind == "project") <= 0.2 + 1e-9
    assert all(e.actor for e in entries)
    # The server answered both queries on the view and kept their results (what a release attaches).
    results = session.scalars(
        select(DPQueryResult).where(DPQueryResult.project_id == airlock_workspace.project_id)
    ).all()
    assert sorted(r.query["statistic"] for r in results) == ["histogram", "mean"]
