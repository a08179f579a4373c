"""The same workspace code runs unchanged on a Spark standalone cluster and a Dask cluster.

The clusters are real processes on 127.0.0.1 (see clusters.py). A workspace is pointed at them only by
the deployment's settings (``TRE_WORKSPACE_SPARK_MASTER``, ``TRE_SPARK_CONF_JSON``,
``TRE_WORKSPACE_DASK_SCHEDULER``), turned into the workspace's environment by the hub's own
``workspace_env``; the pipeline (scale_out_pipeline.py) does not change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clusters import PROJECT, WORKERS, DaskDistributed, SparkStandalone
from scale_out_pipeline import (
    inactivity_by_chapter_dask,
    inactivity_by_chapter_pandas,
    inactivity_by_chapter_spark,
    summary,
)

import tre_lib
from tre_platform.hub.workspace import workspace_env
from tre_platform.settings import get_settings

PIPELINE = Path(__file__).with_name("scale_out_pipeline.py")

#: Small executors; wait until both have registered before the first job, so both get work.
CLUSTER_SPARK_CONF = {
    "spark.executor.memory": "512m",
    "spark.executor.cores": "1",
    "spark.cores.max": str(WORKERS),
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
    "spark.scheduler.minRegisteredResourcesRatio": "1.0",
    "spark.scheduler.maxRegisteredResourcesWaitingTime": "600s",
    "spark.locality.wait": "0s",
}

pytestmark = pytest.mark.slow


def deployment_workspace_env(monkeypatch: pytest.MonkeyPatch, views: Path, **settings: str) -> dict[str, str]:
    """The environment the hub gives a workspace of PROJECT under a deployment's ``TRE_*`` settings."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    # This pipeline never uses the airlock, so the workspace gets no control-plane URL or token.
    return workspace_env(PROJECT, str(views), get_settings(), api_url="", token="")


@pytest.fixture(scope="module")
def reference(cluster_views: Path) -> dict[str, Any]:
    """The table computed with pandas in one process: what every engine must publish."""
    return summary(inactivity_by_chapter_pandas(tre_lib.session(PROJECT, views_dir=cluster_views)))


def test_the_reference_table_needs_suppression(reference: dict[str, Any]) -> None:
    # A table with nothing suppressed would not show that the engines agree on the hard part.
    assert reference["status"] == "review"
    assert len(reference["suppressed"]) >= 2


def test_spark_local_mode_publishes_the_reference_table(
    cluster_views: Path, reference: dict[str, Any], spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = deployment_workspace_env(monkeypatch, cluster_views)
    assert env["TRE_SPARK_MASTER"].startswith("local[")
    assert summary(inactivity_by_chapter_spark(tre_lib.session(environ=env))) == reference


def run_workspace(engine: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run the pipeline in a fresh workspace process with exactly ``env`` as its ``TRE_*`` settings.

    A fresh process, as a workspace is: one JVM holds one SparkContext, and this test process already has
    a local one; and its Dask computations would go to the test run's shared client.
    """
    workspace = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")} | env
    run = subprocess.run(
        [sys.executable, str(PIPELINE), engine], env=workspace, capture_output=True, text=True, cwd=cwd
    )
    assert run.returncode == 0, run.stderr[-4000:]
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def test_the_same_spark_code_runs_on_a_standalone_cluster_with_two_workers(
    spark_standalone: SparkStandalone,
    cluster_views: Path,
    reference: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = deployment_workspace_env(
        monkeypatch,
        cluster_views,
        TRE_WORKSPACE_SPARK_MASTER=spark_standalone.master_url,
        TRE_SPARK_CONF_JSON=json.dumps(CLUSTER_SPARK_CONF),
    )
    out = run_workspace("spark", env, tmp_path)

    assert out["master"] == spark_standalone.master_url
    assert out["summary"] == reference
    # The driver's status REST API: two executors besides the driver, and each ran tasks of this job.
    executors = [e for e in out["executors"] if e["id"] != "driver"]
    assert len(executors) == WORKERS
    assert all(e["tasks"] > 0 for e in executors), out["executors"]
    # The master saw the application get one core on each of its two workers.
    state = spark_standalone.state()
    (app,) = [a for a in state["activeapps"] + state["completedapps"] if a["id"] == out["application"]]
    assert app["cores"] == WORKERS
    worker_apps = spark_standalone.worker_apps()
    assert all(out["application"] in apps for apps in worker_apps), worker_apps


def test_dask_local_mode_publishes_the_reference_table(
    cluster_views: Path, reference: dict[str, Any], dask_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test run's one in-process LocalCluster stands in for the workspace's own LocalCluster.
    env = deployment_workspace_env(
        monkeypatch, cluster_views, TRE_WORKSPACE_DASK_SCHEDULER=dask_client.scheduler.address
    )
    with tre_lib.session(environ=env) as ws:
        assert summary(inactivity_by_chapter_dask(ws)) == reference


def test_the_same_dask_code_runs_on_a_scheduler_with_two_workers(
    dask_distributed: DaskDistributed,
    cluster_views: Path,
    reference: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = deployment_workspace_env(
        monkeypatch, cluster_views, TRE_WORKSPACE_DASK_SCHEDULER=dask_distributed.address
    )
    assert env["TRE_DASK_SCHEDULER"] == dask_distributed.address
    out = run_workspace("dask", env, tmp_path)

    assert out["scheduler"] == dask_distributed.address
    assert out["summary"] == reference
    # The scheduler's task stream: every task ran on one of the two workers, and both took part; the
    # workers are two processes other than the workspace's.
    assert len(out["workers"]) == WORKERS
    assert out["ran_on"] == out["workers"]
    assert len(set(out["worker_pids"])) == WORKERS and out["pid"] not in out["worker_pids"]
