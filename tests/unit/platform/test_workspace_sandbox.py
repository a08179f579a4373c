"""Sealing a workspace (ADR 0012) without a hub: the firewall rules as data, the address rewriting, the
settings' refusal, the starter notebooks that fit a project, and - as root - a real sandbox whose detached
process dies with it and whose network reaches only the allowed port."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tre_platform.hub import sandbox
from tre_platform.hub.folders import fitting_templates
from tre_platform.settings import Environment, Settings, StorageMode

TEMPLATES = Path(__file__).resolve().parents[3] / "notebooks_templates"


def _sandbox(**overrides: object) -> sandbox.Sandbox:
    values: dict[str, object] = {
        "id": "abc123",
        "unix_user": "nobody",
        "project": "P-1",
        "slot": 3,
        "subnet": "10.213.0.0/16",
        "host_ports": (8082, 8000, 3141),
    }
    values.update(overrides)
    return sandbox.Sandbox(**values)  # type: ignore[arg-type]


def test_each_workspace_gets_its_own_slash_30() -> None:
    made = _sandbox()
    assert (made.gateway, made.address) == ("10.213.0.13", "10.213.0.14")
    assert _sandbox(slot=4).gateway == "10.213.0.17"


def test_only_loopback_urls_on_an_allowed_port_are_pointed_at_the_gateway() -> None:
    made = _sandbox()
    assert (
        sandbox.rewrite_loopback_url("http://127.0.0.1:8082/hub/api", made)
        == "http://10.213.0.13:8082/hub/api"
    )
    assert (
        sandbox.rewrite_loopback_url("http://localhost:3141/simple/", made)
        == "http://10.213.0.13:3141/simple/"
    )
    # Not an allowed port (the proxy's API), not loopback: unchanged, hence unreachable.
    assert sandbox.rewrite_loopback_url("http://127.0.0.1:8083/api", made) == "http://127.0.0.1:8083/api"
    assert sandbox.rewrite_loopback_url("https://pypi.org/simple", made) == "https://pypi.org/simple"


def test_cluster_addresses_are_parsed_and_local_masters_are_not_addresses() -> None:
    assert sandbox.cluster_endpoints(
        "spark://10.0.0.5:7077,10.0.0.6:7077", "tcp://sched:8786", "local[2]", None
    ) == (
        sandbox.Endpoint("10.0.0.5", 7077),
        sandbox.Endpoint("10.0.0.6", 7077),
        sandbox.Endpoint("sched", 8786),
    )


def test_the_host_rules_let_in_only_the_dnat_ports_and_forward_only_the_cluster() -> None:
    rules = sandbox.host_rules(_sandbox(remote=(sandbox.Endpoint("10.0.0.5", 7077),)))
    assert "ip daddr 10.213.0.13 tcp dport { 8082, 8000, 3141 } dnat ip to 127.0.0.1" in rules
    assert 'iifname "trhabc123" drop' in rules and 'oifname "trhabc123" drop' in rules
    assert "ip daddr 10.0.0.5 tcp dport 7077 accept" in rules and "masquerade" in rules
    inside = sandbox.namespace_rules(_sandbox())
    assert "policy drop" in inside and f"tcp dport {sandbox.SERVER_PORT} accept" in inside


def test_sealing_off_is_refused_in_production() -> None:
    with pytest.raises(ValueError, match="TRE_WORKSPACE_SEALED=false is refused"):
        Settings(env=Environment.prod, workspace_sealed=False, secret_key="x" * 40)  # type: ignore[call-arg]
    Settings(env=Environment.test, workspace_sealed=False)  # type: ignore[call-arg]
    Settings(  # type: ignore[call-arg]
        env=Environment.prod,
        workspace_sealed=False,
        storage_mode=StorageMode.insecure_single_user,
        secret_key="x" * 40,
    )


def test_the_starter_notebooks_copied_are_those_whose_datasets_the_project_holds() -> None:
    names = [p.name for p in fitting_templates(["hospital_episodes"], TEMPLATES)]
    assert names == ["03_protected_table_release.ipynb", "04_differential_privacy.ipynb"]
    assert [p.name for p in fitting_templates(["product_safety_incidents"], TEMPLATES)] == [
        "02_product_safety_dask.ipynb"
    ]
    assert fitting_templates([], TEMPLATES) == []


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(sandbox.NFT).exists(), reason="needs root and nftables"
)


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"ok")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    done.set()
    thread.join()
    server.close()


PROBE = """
import json, socket, subprocess, sys
def attempt(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return "OPEN"
    except OSError as exc:
        return type(exc).__name__
loop = subprocess.Popen(["setsid", "nohup", "sleep", "600"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(json.dumps({"allowed": attempt(sys.argv[1], int(sys.argv[2])), "other": attempt(sys.argv[1], 22),
                  "loopback": attempt("127.0.0.1", int(sys.argv[2])), "loop": loop.pid}))
"""


@needs_root
def test_a_real_sandbox_reaches_only_its_allowed_port_and_its_detached_processes_die_with_it(
    listener: int, tmp_path: Path
) -> None:
    import json

    nobody = pwd.getpwnam("nobody")
    made = sandbox.create_sandbox(
        unix_user="nobody",
        project="P-UNIT",
        subnet="10.213.0.0/16",
        host_ports=[listener],
        home=tmp_path,
    )
    try:

        def enter() -> None:
            sandbox.enter_sandbox(made, "/nonexistent")
            os.setgid(nobody.pw_gid)
            os.setgroups([])
            os.setuid(nobody.pw_uid)

        result = subprocess.run(
            ["/usr/bin/python3", "-c", PROBE, made.gateway, str(listener)],
            preexec_fn=enter,
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        )
        seen = json.loads(result.stdout)
        assert seen["allowed"] == "OPEN"
        assert seen["other"] != "OPEN" and seen["loopback"] != "OPEN", seen
        assert sandbox.is_running(seen["loop"]), "the detached loop runs until the sandbox goes"
    finally:
        sandbox.destroy_sandbox(made)
    assert not sandbox.is_running(seen["loop"])  # killed (a zombie until its new parent reaps it)
    assert not Path(f"/run/netns/{made.netns}").exists()
    assert made.id not in {s.id for s in sandbox.registered()}
    listed = subprocess.run([sandbox.NFT, "list", "tables"], capture_output=True, text=True, check=False)
    assert made.id not in listed.stdout


@needs_root
def test_the_sweep_kills_a_detached_process_left_by_a_researcher_and_spares_one_someone_runs() -> None:
    import shutil
    import time

    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    # A researcher's detached loop whose starter is gone (reparented to init), and a command an operator
    # runs as that user (its parent, runuser, is still there). `nobody` stands in for the researcher.
    started = subprocess.run(
        [runuser, "-u", "nobody", "--", "sh", "-c", "setsid nohup sleep 600 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    detached = int(started.stdout.strip())
    attended = subprocess.Popen([runuser, "-u", "nobody", "--", "sleep", "600"])
    try:
        deadline = time.monotonic() + 30
        while not sandbox.is_running(detached) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = {k.pid for k in sandbox.sweep_orphan_processes(extra_users=["nobody"])}
        assert detached in killed
        assert attended.poll() is None and not any(
            Path(f"/proc/{pid}/status").exists() and pid in killed for pid in [attended.pid]
        )
    finally:
        attended.kill()
        attended.wait()
