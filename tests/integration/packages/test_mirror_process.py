"""The mirror process `tre up` starts does not outlive it, however `tre up` ends (uvicorn re-raises the
signal that stopped it, so no `finally` of the parent can be relied on)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from mirror_support import free_port


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_the_mirror_stops_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    port = free_port()
    parent = (
        "import subprocess, sys, time\n"
        "from tre_platform.api.packages.mirror import start_mirror\n"
        "print(start_mirror().pid, flush=True)\n"
        "time.sleep(3600)\n"
    )
    env = {**os.environ, "TRE_PACKAGE_MIRROR_PORT": str(port)}
    starter = subprocess.Popen([sys.executable, "-c", parent], env=env, stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    mirror = int(starter.stdout.readline())
    url = f"http://127.0.0.1:{port}/simple/"
    while True:  # until the mirror answers
        try:
            if httpx.get(url).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    starter.kill()
    starter.wait()
    while _alive(mirror):
        time.sleep(0.2)
    try:
        httpx.get(url)
        raise AssertionError("the mirror still answers")
    except httpx.TransportError:
        pass
