"""Real clusters on 127.0.0.1, one of each per module: a Spark standalone master with two workers, and a
Dask scheduler with two workers, each a separate process started the way an operator starts them.

Spark: ``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker`` from the pyspark package
(the package ships no ``sbin/start-master.sh``), one core and 768 MiB per worker. Dask: ``dask scheduler``
and two ``dask worker`` processes with one thread each. Ports are free ones picked at start; everything is
stopped (with the executors the workers forked) when the module ends.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyspark
from unit.compute.workspace_processes import Daemon, free_port, start, wait_until

SPARK_HOME = Path(pyspark.__file__).resolve().parent
PROJECT = "P-CLUSTER"
WORKERS = 2


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback URL
        return json.load(response)


def stop_all(daemons: list[Daemon]) -> None:
    for daemon in reversed(daemons):
        daemon.stop()


@dataclass
class SparkStandalone:
    master_url: str
    master_ui: str
    worker_uis: list[str]
    daemons: list[Daemon]

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = get_json(f"{self.master_ui}/json/")
        return result

    def worker_apps(self) -> list[set[str]]:
        """Per worker, the applications it has run executors for."""
        out = []
        for ui in self.worker_uis:
            state = get_json(f"{ui}/json/")
            out.append({e["appid"] for e in state.get("executors", []) + state.get("finishedexecutors", [])})
        return out


def start_spark_standalone(base: Path) -> SparkStandalone:
    """A master and WORKERS workers (one core, 768 MiB each); stopped again if they do not come up."""
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",
        # The master's REST submission server would take port 6066 on the shared host; it is not needed.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        "PYSPARK_PYTHON": sys.executable,
    }
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    master_url, master_ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}"
    daemons = [
        start(
            "spark master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *("--webui-port", str(ui)),
            ],
            env,
            base / "master.log",
        )
    ]
    worker_uis = []
    try:
        wait_until(lambda: get_json(f"{master_ui}/json/")["status"] == "ALIVE", daemons, "the Spark master")
        for n in range(1, WORKERS + 1):
            worker_ui = free_port()
            worker_uis.append(f"http://127.0.0.1:{worker_ui}")
            daemons.append(
                start(
                    f"spark worker {n}",
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        master_url,
                        *("--host", "127.0.0.1", "--cores", "1", "--memory", "768m"),
                        *("--webui-port", str(worker_ui), "--work-dir", str(base / f"worker-{n}")),
                    ],
                    env,
                    base / f"worker-{n}.log",
                )
            )
        wait_until(
            lambda: get_json(f"{master_ui}/json/")["aliveworkers"] == WORKERS, daemons, "two Spark workers"
        )
    except BaseException:
        stop_all(daemons)
        raise
    return SparkStandalone(master_url, master_ui, worker_uis, daemons)


@dataclass
class DaskDistributed:
    address: str
    daemons: list[Daemon]


def start_dask_distributed(base: Path) -> DaskDistributed:
    """``dask scheduler`` and WORKERS ``dask worker`` processes (one thread each)."""
    dask = str(Path(sys.executable).with_name("dask"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    daemons = [
        start(
            "dask scheduler",
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            os.environ,
            base / "scheduler.log",
        )
    ]

    def workers() -> int:
        from distributed import Client

        with Client(address, timeout=10) as client:
            return len(client.scheduler_info()["workers"])

    try:
        for n in range(1, WORKERS + 1):
            daemons.append(
                start(
                    f"dask worker {n}",
                    [
                        *(dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1"),
                        *("--memory-limit", "1GiB", "--no-dashboard", "--name", f"worker-{n}"),
                        *("--local-directory", str(base / f"worker-{n}")),
                    ],
                    os.environ,
                    base / f"worker-{n}.log",
                )
            )
        wait_until(lambda: workers() == WORKERS, daemons, "two Dask workers")
    except BaseException:
        stop_all(daemons)
        raise
    return DaskDistributed(address, daemons)
