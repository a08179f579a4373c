"""Workspace code as a researcher writes it: ``tre_lib.session()``, the project's views, a protected table.

Nothing here knows where it runs. The scale-out tests run these functions in local mode and against real
clusters, configured only by the environment a deployment gives a workspace, and compare the results.

Run as a script (``python scale_out_pipeline.py spark|dask``) it is a fresh workspace process: it reads
``TRE_*`` from its environment, runs one version and prints one ``RESULT {json}`` line with the table and
where the work ran (Spark's status REST API, Dask's scheduler).
"""

from __future__ import annotations

import json
import math
import os
import sys
import urllib.request
from typing import Any

import tre_lib
from tre_lib.compute import Workspace
from tre_lib.disclosure import protect_table
from tre_lib.disclosure.table import ProtectedTable
from tre_lib.outputs.specs import table_cells

LINK = """
    SELECT h.diagnosis_chapter, l.employment_status
    FROM hospital_episodes h
    JOIN labour_force_survey l ON h.demographic_id = l.demographic_id
"""


def inactivity_by_chapter_spark(ws: Workspace) -> ProtectedTable:
    """Link the two views on the project IDs with Spark SQL and protect the chapter x status table."""
    linked = ws.spark().sql(LINK)
    return protect_table(linked, "diagnosis_chapter", "employment_status", rules="default")


def inactivity_by_chapter_dask(ws: Workspace) -> ProtectedTable:
    """The same table with Dask DataFrames."""
    episodes = ws.read("hospital_episodes", engine="dask", columns=["demographic_id", "diagnosis_chapter"])
    survey = ws.read("labour_force_survey", engine="dask", columns=["demographic_id", "employment_status"])
    linked = episodes.merge(survey, on="demographic_id")
    return protect_table(linked, "diagnosis_chapter", "employment_status", rules="default")


def inactivity_by_chapter_pandas(ws: Workspace) -> ProtectedTable:
    """The reference: pandas in the workspace process."""
    linked = ws.read("hospital_episodes").merge(ws.read("labour_force_survey"), on="demographic_id")
    return protect_table(linked, "diagnosis_chapter", "employment_status", rules="default")


def summary(result: ProtectedTable) -> dict[str, Any]:
    """The published table as JSON-able data: status, every cell (None when suppressed), the suppressions."""
    cells = {
        f"{'/'.join(row)} | {'/'.join(col)}": None if math.isnan(value) else value
        for (row, col), value in table_cells(result.table).items()
    }
    return {
        "status": result.status,
        "cells": cells,
        "suppressed": sorted(f"{row} | {col}" for row, col in result.suppressed),
    }


def spark_run(ws: Workspace) -> dict[str, Any]:
    """The Spark version, and what the driver's status REST API says about the executors that ran it."""
    result = inactivity_by_chapter_spark(ws)
    context = ws.spark().sparkContext
    url = f"{context.uiWebUrl}/api/v1/applications/{context.applicationId}/executors"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the driver's own UI
        executors = json.load(response)
    evidence = {
        "master": context.master,
        "application": context.applicationId,
        "executors": [
            {"id": e["id"], "host_port": e["hostPort"], "tasks": e["totalTasks"]} for e in executors
        ],
    }
    ws.spark().stop()
    return {"summary": summary(result), **evidence}


def dask_run(ws: Workspace) -> dict[str, Any]:
    """The Dask version, and where the scheduler says its tasks ran."""
    from distributed import get_task_stream

    client = ws.dask()
    with get_task_stream(client) as stream:
        result = inactivity_by_chapter_dask(ws)
    evidence = {
        "scheduler": client.scheduler.address,
        "workers": sorted(client.scheduler_info()["workers"]),
        "ran_on": sorted({task["worker"] for task in stream.data}),
        "worker_pids": sorted(client.run(os.getpid).values()),
        "pid": os.getpid(),
    }
    ws.close()
    return {"summary": summary(result), **evidence}


def main(engine: str) -> None:
    run = {"spark": spark_run, "dask": dask_run}[engine]
    print("RESULT", json.dumps(run(tre_lib.session())), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
