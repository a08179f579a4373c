"""Real servers for the workspace tests: the control plane, Spark standalone daemons, Dask schedulers.

Each is a subprocess in its own session (process group), logging to a file; ``stop()`` ends that group only,
so the executors a Spark worker forked go with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tre_platform.hub.local import free_port

__all__ = ["ControlPlane", "Daemon", "free_port", "start", "wait_until"]

#: How long a daemon may take to come up before the test fails with its log (a hang guard, not a timing
#: assertion: two shared cores start a JVM in ~10 s, sometimes much more).
STARTUP_GRACE_SECONDS = 600


@dataclass
class Daemon:
    """A started subprocess and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        """Terminate the daemon's process group (it and what it forked), then kill what is left."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Children (Spark executors) may outlive their parent briefly: end the rest of the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass(frozen=True)
class ControlPlane:
    """The control plane serving the demo world, and a workspace token of the demo researcher."""

    url: str
    token: str
    project_code: str
    project_id: str


def start(name: str, command: Sequence[str], env: Mapping[str, str], log: Path) -> Daemon:
    """Start ``command`` in a new session, stdout and stderr to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command), env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Daemon(name, process, log)


def wait_until(ready: Callable[[], bool], daemons: Sequence[Daemon], what: str) -> None:
    """Poll ``ready()`` until it is true; a daemon that dies is reported with its log, not waited on."""
    deadline = time.monotonic() + STARTUP_GRACE_SECONDS
    while True:
        for daemon in daemons:
            daemon.check_alive()
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {d.name}\n{d.tail(1500)}" for d in daemons)
            raise RuntimeError(f"{what} did not happen within {STARTUP_GRACE_SECONDS} s:\n{logs}")
        time.sleep(0.5)
