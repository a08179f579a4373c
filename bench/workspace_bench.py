"""Seconds from signing in to a usable workspace, through the real hub, against a plain ``jupyter lab``.

For each of ``--repeat`` runs (default 5, the median is reported):

* **hub**: the demo researcher signs in to JupyterHub (password and TOTP), chooses the project on the spawn
  form, and waits until JupyterLab's page is served (the pre-spawn policy check, Unix account and views,
  the spawn as the researcher's user, the proxy route and the OAuth hand-shake are all inside). Then, in
  a kernel of that server, ``tre_lib.session().spark()`` runs a tiny job; in a fresh kernel,
  ``.dask()`` runs one. The server is stopped before the next run.
* **unsealed**: the same hub runs, on the same deployment, after a restart with ``TRE_WORKSPACE_SEALED=false``
  (no network namespace, mount namespace or cgroup; ADR 0012). The difference is what sealing costs
  (goal: < 1.5 s added to "JupyterLab ready").
* **peer**: the same Unix user starts a plain ``jupyter lab`` from the same workspace environment, with
  the same ``TRE_*`` environment, no hub; the same page and the same two jobs are timed from its start.

Targets on this machine: JupyterLab ready < 10 s, Spark and Dask usable < 20 s. Both sides start Spark
with the workspace environment's defaults: the driver's JVM options and its class-data-sharing archive
(tre_lib/compute/spark_archive.py; before them, Spark usable took 31.5 s here, ADR 0005). The deployment
(demo world, control plane, hub) is set up once before the timings, as the tests do (tests/integration/hub).
Needs root, the workspace environment and configurable-http-proxy (``make setup``).

Usage: python bench/workspace_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration" / "hub")]

from hub_fixtures import HUB_READY, VENV, DemoDeployment, _demo_stack  # noqa: E402

from tre_platform.hub.local import (  # noqa: E402
    HubResearcher,
    LocalDeployment,
    ServerKernel,
    free_port,
    wait_for,
)

console = Console()
TARGETS = {"JupyterLab ready": 10.0, "Spark usable": 20.0, "Dask usable": 20.0}
#: Seconds sealing may add to sign-in -> ready JupyterLab (issue 13).
SEALING_BUDGET = 1.5
SPARK_JOB = (
    "import tre_lib\nws = tre_lib.session()\nspark = ws.spark()\n"
    "print(spark.range(10_000).selectExpr('sum(id) AS s').first()['s'])"
)
DASK_JOB = (
    "import tre_lib\nws = tre_lib.session()\nclient = ws.dask()\n"
    "print(client.submit(sum, range(10_000)).result())"
)
EXPECTED = str(sum(range(10_000)))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _check(output: str) -> None:
    if output.strip() != EXPECTED:
        raise SystemExit(f"the tiny job returned {output!r}, not {EXPECTED}")


def hub_run(demo: DemoDeployment) -> tuple[dict[str, float], dict[str, str]]:
    """One sign-in to usable Spark and Dask through the hub; returns the times and the server's env."""
    login = demo.logins["alice"]
    with HubResearcher(demo.deployment, "alice") as alice:
        code = login.otp()  # read off the app before the clock starts (may wait for a fresh code)
        start = time.perf_counter()
        alice.sign_in(login.password, otp=code)
        alice.start_workspace(demo.health_project)
        alice.wait_until_lab_ready(pause=0.05)
        lab = time.perf_counter() - start
        env = alice.server_environment()
        spark = lab + _timed(lambda: _check(alice.run(SPARK_JOB)))
        dask = lab + _timed(lambda: _check(alice.new_kernel().run(DASK_JOB)))
        alice.stop_workspace()
    return {"JupyterLab ready": lab, "Spark usable": spark, "Dask usable": dask}, env


def plain_lab_run(server_env: dict[str, str]) -> dict[str, float]:
    """The peer: the same user and environment start ``jupyter lab`` directly (no hub, no proxy)."""
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in server_env.items() if not k.startswith(("JUPYTERHUB_", "JPY_"))}
    argv = [
        shutil.which("runuser") or "/usr/sbin/runuser",
        "-u",
        server_env["USER"],
        "--",
        str(VENV / "bin" / "jupyter-lab"),
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={server_env['HOME']}",
    ]
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )

    def page() -> bool:
        try:
            response = httpx.get(f"{base}/lab?token={token}", timeout=5, trust_env=False)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and "jupyter-config-data" in response.text

    try:
        wait_for(
            "plain jupyter lab",
            page,
            pause=0.05,
            alive=lambda: None if proc.poll() is None else f"jupyter lab exited ({proc.returncode})",
        )
        lab = time.perf_counter() - start
        spark = lab + _timed(lambda: _check(ServerKernel(base, token).run(SPARK_JOB)))
        dask = lab + _timed(lambda: _check(ServerKernel(base, token).run(DASK_JOB)))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"JupyterLab ready": lab, "Spark usable": spark, "Dask usable": dask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (the median is reported)")
    args = parser.parse_args()
    if not HUB_READY:
        raise SystemExit("needs root, the workspace environment and configurable-http-proxy (make setup)")
    load_before = os.getloadavg()[0]
    ours: list[dict[str, float]] = []
    peer: list[dict[str, float]] = []
    unsealed: list[dict[str, float]] = []
    console.print("setting up the demo deployment (demo world, control plane, hub) ...")
    # Splink explains each comparison level it cannot train on the small demo world; noise here.
    logging.disable(logging.WARNING)
    with (
        tempfile.TemporaryDirectory() as logs,
        _demo_stack(Path(logs)) as demo,
        Progress(console=console) as bar,
    ):
        task = bar.add_task("hub and plain jupyter lab runs", total=args.repeat)
        for _ in range(args.repeat):
            timings, env = hub_run(demo)
            ours.append(timings)
            peer.append(plain_lab_run(env))
            bar.advance(task)
        # The same deployment, its hub and control plane restarted with sealing off.
        demo.deployment.stop()
        env_off = {k: v for k, v in demo.deployment.env.items() if k.startswith("TRE_")}
        env_off["TRE_WORKSPACE_SEALED"] = "false"
        with LocalDeployment.start(env_off, log_dir=Path(logs) / "unsealed") as plain_hub:
            other = dataclasses.replace(demo, deployment=plain_hub)
            task = bar.add_task("hub runs with sealing off", total=args.repeat)
            for _ in range(args.repeat):
                unsealed.append(hub_run(other)[0])
                bar.advance(task)

    table = Table(title=f"login to a usable workspace, median of {args.repeat} (seconds)")
    columns = ("milestone", "hub (tre)", "hub unsealed", "sealing adds", "plain jupyter lab", "hub / plain")
    for column in (*columns, "target", "within"):
        table.add_column(column, justify="right" if column != "milestone" else "left")
    for name, target in TARGETS.items():
        a = statistics.median(t[name] for t in ours)
        u = statistics.median(t[name] for t in unsealed)
        b = statistics.median(t[name] for t in peer)
        table.add_row(
            name,
            f"{a:.2f}",
            f"{u:.2f}",
            f"{a - u:+.2f}",
            f"{b:.2f}",
            f"{a / b:.2f}x",
            f"< {target:.0f}",
            "yes" if a < target else "NO",
        )
    console.print(table)
    added = statistics.median(t["JupyterLab ready"] for t in ours) - statistics.median(
        t["JupyterLab ready"] for t in unsealed
    )
    console.print(
        f"sealing (network namespace, nftables, mount namespace, cgroup) adds {added:+.2f} s to sign-in -> "
        f"ready JupyterLab (goal < {SEALING_BUDGET} s): {'yes' if added < SEALING_BUDGET else 'NO'}"
    )
    console.print(
        f"cores {os.cpu_count()}, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
        "each hub run: sign-in with TOTP, "
        "spawn form, pre-spawn policy check, server as the researcher's Unix user, proxy, OAuth."
    )


if __name__ == "__main__":
    main()
