"""The starter notebooks run top to bottom (nbclient) against a workspace's environment and views."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from compute_views import make_view
from nbclient import NotebookClient

TEMPLATES = Path(__file__).resolve().parents[3] / "notebooks_templates"


@pytest.fixture
def workspace_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rng = np.random.default_rng(3)
    views = tmp_path / "views"
    ids = [f"{i:064x}" for i in range(400)]
    make_view(
        views,
        "hospital_episodes",
        pd.DataFrame({"demographic_id": ids[:300], "diagnosis_chapter": rng.choice(["II", "IX", "X"], 300)}),
    )
    make_view(
        views,
        "labour_force_survey",
        pd.DataFrame(
            {"demographic_id": ids[100:], "employment_status": rng.choice(["employed", "inactive"], 300)}
        ),
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
        ids=("business_id",),
    )
    monkeypatch.setenv("TRE_PROJECT", "P-1")
    monkeypatch.setenv("TRE_VIEWS_DIR", str(views))
    monkeypatch.setenv("TRE_SPARK_MASTER", "local[1]")
    monkeypatch.setenv(
        "TRE_SPARK_CONF", json.dumps({"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"})
    )
    monkeypatch.setenv("TRE_DASK_WORKERS", "1")
    monkeypatch.setenv("TRE_DASK_THREADS", "1")
    return views


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.ipynb")))
def test_a_starter_notebook_runs_top_to_bottom(name: str, workspace_env: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(TEMPLATES / name, as_version=4)
    NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    assert any(c.outputs for c in notebook.cells if c.cell_type == "code")
