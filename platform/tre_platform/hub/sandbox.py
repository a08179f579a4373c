"""Sealed workspaces on one host: a network namespace, a mount namespace and a cgroup per server.

See docs/adr/0012-sealed-workspaces.md. For each single-user server the spawner (root) calls
:func:`create_sandbox`, which makes

* a **network namespace** ``tre-ws-<id>`` joined to the host by a veth pair on its own /30
  (``<gateway>`` on the host, ``<address>`` inside), with nftables rules: on the host, DNAT of
  ``<gateway>:<port>`` to ``127.0.0.1:<port>`` for exactly the hub API, the control plane and the package
  mirror (``route_localnet`` on the host-side veth), every other packet from the veth dropped, nothing
  forwarded but to a configured cluster's declared addresses; inside, only the proxy may open a connection
  (to the server's port), and only to those ports or the cluster may the workspace open one. The
  namespace's own loopback is private and open, so local Spark and Dask work as before.
* a **cgroup** (v1 ``pids`` and ``freezer``; v2 when the host has only that) that the server joins before it
  drops root; every process it starts stays in it whatever it does (``setsid``, ``nohup``, double fork),
  so :func:`destroy_sandbox` freezes it, kills everything in it and removes it.
* the **private filesystem view** (applied in the server's process by :func:`enter_sandbox`): a mount
  namespace whose ``/tmp``, ``/var/tmp`` and ``/run/lock`` are this server's own directory, ``/dev/shm`` a
  fresh tmpfs, and the researcher's home directory the home of this researcher *in this project*
  (:func:`project_home`).

Every sandbox is recorded in :data:`REGISTRY_DIR` (``/run``, so a reboot forgets it with the kernel state);
:func:`sweep_leftover_sandboxes` removes those whose server is gone (a crashed hub) and
:func:`sweep_orphan_processes` kills any process of a researcher's Unix user outside a live workspace.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import ipaddress
import json
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tre_platform.errors import TreError
from tre_platform.views import storage

log = logging.getLogger(__name__)

#: Where live sandboxes are recorded (root only; on tmpfs).
REGISTRY_DIR = Path("/run/tre-workspaces")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The cgroup (under each controller) that holds every workspace's own cgroup.
CGROUP_PARENT = "tre-workspaces"
CGROUP_V1_CONTROLLERS = ("pids", "freezer")
NETNS_PREFIX = "tre-ws-"
NFT_TABLE_PREFIX = "tre-ws-"
#: The port every server listens on inside its own namespace (each namespace has its own ports).
SERVER_PORT = 8888
#: A sandbox younger than this is never swept as a leftover: its server may still be starting.
SWEEP_GRACE_SECONDS = 120.0
#: Directories every local user may write to; each gets a private copy inside a workspace.
SHARED_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/run/lock")  # noqa: S108 - replaced, not used

IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(TreError):
    """A workspace's namespace, firewall or cgroup could not be made or removed (the message says which)."""

    status_code = 500
    code = "sandbox_error"


@dataclass(frozen=True)
class Endpoint:
    """An address a workspace may open a TCP connection to."""

    host: str
    port: int


@dataclass(frozen=True)
class Sandbox:
    """One server's namespaces and cgroup (serialisable: it is kept in the hub's state and the registry)."""

    id: str
    unix_user: str
    project: str
    slot: int
    subnet: str
    #: Loopback ports of the host the workspace reaches through its gateway (hub API, control plane, mirror).
    host_ports: tuple[int, ...]
    #: A configured cluster's declared addresses (Spark standalone master, Dask scheduler).
    remote: tuple[Endpoint, ...] = ()
    home: str = ""
    tmp: str = ""
    #: Paths to keep visible when they lie under a replaced directory (a data directory under /tmp).
    keep: tuple[str, ...] = ()
    created: float = field(default_factory=time.time)
    server_pid: int = 0
    #: The hub that made it: a sandbox outlives neither its server nor its hub.
    hub_pid: int = field(default_factory=os.getpid)

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.id

    @property
    def host_veth(self) -> str:
        return "trh" + self.id

    @property
    def network(self) -> ipaddress.IPv4Network:
        base = ipaddress.IPv4Network(self.subnet)
        return ipaddress.IPv4Network((int(base.network_address) + 4 * self.slot, 30))

    @property
    def gateway(self) -> str:
        """The host's address on this workspace's link: the only address the workspace talks to."""
        return str(self.network.network_address + 1)

    @property
    def address(self) -> str:
        """The server's address (the proxy routes to ``<address>:8888``)."""
        return str(self.network.network_address + 2)

    def cgroup_dirs(self) -> list[Path]:
        return [path / self.id for path in _cgroup_parents()]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> Sandbox:
        data = json.loads(raw)
        data["host_ports"] = tuple(data.get("host_ports", ()))
        data["remote"] = tuple(Endpoint(**e) for e in data.get("remote", ()))
        data["keep"] = tuple(data.get("keep", ()))
        return cls(**data)

    def with_pid(self, pid: int) -> Sandbox:
        return dataclasses.replace(self, server_pid=pid)


# Names and addresses -----------------------------------------------------------------------------------


def cluster_endpoints(*addresses: str | None) -> tuple[Endpoint, ...]:
    """The host:port of each configured cluster address (``spark://h:7077``, ``tcp://h:8786``); ``local[*]``
    and empty values are not addresses."""
    found: list[Endpoint] = []
    for address in addresses:
        if not address or "://" not in address:
            continue
        for part in urlsplit(address).netloc.split(","):  # spark://a:7077,b:7077 (standby masters)
            host, _, port = part.rpartition(":")
            if host and port.isdigit():
                found.append(Endpoint(host.strip("[]"), int(port)))
    return tuple(found)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rewrite_loopback_url(value: str, sandbox: Sandbox) -> str:
    """``value`` with a loopback host replaced by the sandbox's gateway when its port is one it may reach.

    ``http://127.0.0.1:8082/hub/api`` becomes ``http://10.213.0.1:8082/hub/api``; anything else is kept.
    """
    pattern = re.compile(r"(?P<scheme>[a-z+]+://)(?:127\.0\.0\.1|localhost)(?=:(?P<port>\d+))")

    def swap(match: re.Match[str]) -> str:
        if int(match.group("port")) in sandbox.host_ports:
            return match.group("scheme") + sandbox.gateway
        return match.group(0)

    return pattern.sub(swap, value)


# The registry ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    REGISTRY_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (REGISTRY_DIR / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def registered() -> list[Sandbox]:
    """Every sandbox recorded on this host (by any hub)."""
    found = []
    if REGISTRY_DIR.is_dir():
        for entry in sorted(REGISTRY_DIR.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                found.append(Sandbox.from_json(entry.read_text()))
    return found


def _record(sandbox: Sandbox) -> None:
    path = REGISTRY_DIR / f"{sandbox.id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(sandbox.to_json())
    tmp.replace(path)


def record_server(sandbox: Sandbox, pid: int) -> Sandbox:
    """Note the server's pid (the sweep tells a live sandbox from a leftover by it)."""
    updated = sandbox.with_pid(pid)
    with _registry_lock():
        _record(updated)
    return updated


# Creation ------------------------------------------------------------------------------------------


def _cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _cgroup_parents() -> list[Path]:
    if _cgroup_v2():
        return [CGROUP_ROOT / CGROUP_PARENT]
    return [CGROUP_ROOT / c / CGROUP_PARENT for c in CGROUP_V1_CONTROLLERS if (CGROUP_ROOT / c).is_dir()]


def _run(argv: list[str], *, stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(
            f"`{' '.join(argv)}` failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
        )


def _write(path: Path, value: str) -> None:
    with contextlib.suppress(OSError):
        path.write_text(value)


def _free_slot(subnet: str, taken: set[int]) -> int:
    base = ipaddress.IPv4Network(subnet)
    for slot in range(base.num_addresses // 4):
        if slot not in taken:
            return slot
    raise SandboxError(f"no free /30 left in workspace_subnet {subnet}: too many workspaces")


def create_sandbox(
    *,
    unix_user: str,
    project: str,
    subnet: str,
    host_ports: Iterable[int],
    remote: Iterable[Endpoint] = (),
    home: Path,
    keep: Iterable[str] = (),
    max_processes: int = 0,
) -> Sandbox:
    """Make a server's network namespace, firewall, cgroup and private ``/tmp`` (needs root).

    Idempotent clean-up on failure: whatever was made is removed again before the error is raised.

    Raises:
        SandboxError: a tool refused (the message carries its output).
    """
    storage.require_root("sealing a workspace (network namespace, firewall, cgroup)")
    with _registry_lock():
        taken = {s.slot for s in registered() if s.subnet == subnet}
        sandbox = Sandbox(
            id=uuid.uuid4().hex[:10],
            unix_user=unix_user,
            project=project,
            slot=_free_slot(subnet, taken),
            subnet=subnet,
            host_ports=tuple(sorted(set(host_ports))),
            remote=tuple(remote),
            home=str(home),
            keep=tuple(keep),
            tmp=str(REGISTRY_DIR / "tmp" / uuid.uuid4().hex),
        )
        _record(sandbox)
    try:
        _make_cgroup(sandbox, max_processes)
        _make_network(sandbox)
        _make_tmp(sandbox)
    except BaseException:
        destroy_sandbox(sandbox)
        raise
    return sandbox


def _make_cgroup(sandbox: Sandbox, max_processes: int) -> None:
    for path in sandbox.cgroup_dirs():
        path.mkdir(parents=True, exist_ok=True)
        if max_processes > 0 and (path / "pids.max").exists():
            _write(path / "pids.max", str(max_processes))


def _make_network(sandbox: Sandbox) -> None:
    ns, veth, gw, addr = sandbox.netns, sandbox.host_veth, sandbox.gateway, sandbox.address
    _run([IP, "netns", "add", ns])
    _run([IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    # Before the link is up: no IPv6 on the host's end (no link-local address to reach host services by).
    _write(Path(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6"), "1")
    # DNAT to 127.0.0.1 of packets arriving on this veth needs the kernel to accept loopback destinations
    # from a non-loopback interface; only on this interface, and only the DNAT'd ports are let in.
    _write(Path(f"/proc/sys/net/ipv4/conf/{veth}/route_localnet"), "1")
    _run([IP, "-batch", "-"], stdin=f"addr add {gw}/30 dev {veth}\nlink set {veth} up\n")
    inside = [f"addr add {addr}/30 dev eth0", "link set lo up", "link set eth0 up"]
    inside += [f"route add {e.host}/32 via {gw}" for e in sandbox.remote if not is_loopback(e.host)]
    _run([IP, "-n", ns, "-batch", "-"], stdin="\n".join(inside) + "\n")
    _run([NFT, "-f", "-"], stdin=host_rules(sandbox))
    _run([NSENTER, f"--net=/run/netns/{ns}", NFT, "-f", "-"], stdin=namespace_rules(sandbox))
    if any(not is_loopback(e.host) for e in sandbox.remote):
        # A remote cluster is reached through the host: forwarding on, and only for these flows (below).
        _write(Path("/proc/sys/net/ipv4/ip_forward"), "1")


def _ports(ports: Iterable[int]) -> str:
    return "{ " + ", ".join(str(p) for p in ports) + " }"


def host_rules(sandbox: Sandbox) -> str:
    """The host's nftables table for one workspace (see the module's docstring)."""
    veth, gw, addr = sandbox.host_veth, sandbox.gateway, sandbox.address
    loop_ports = list(sandbox.host_ports) + [e.port for e in sandbox.remote if is_loopback(e.host)]
    remote = [e for e in sandbox.remote if not is_loopback(e.host)]
    dnat = dnat_local = allow_in = ""
    if loop_ports:
        dnat = f'iifname "{veth}" ip daddr {gw} tcp dport {_ports(loop_ports)} dnat ip to 127.0.0.1'
        # The host's own processes may use the workspace's addresses too (as the workspace's env says).
        dnat_local = f"ip daddr {gw} tcp dport {_ports(loop_ports)} dnat ip to 127.0.0.1"
        allow_in = f'iifname "{veth}" ip daddr 127.0.0.1 tcp dport {_ports(loop_ports)} ct status dnat accept'
    forward = "\n".join(
        f'    iifname "{veth}" ip saddr {addr} ip daddr {e.host} tcp dport {e.port} accept' for e in remote
    )
    masquerade = "\n".join(
        f"    ip saddr {addr} ip daddr {e.host} tcp dport {e.port} masquerade" for e in remote
    )
    return f"""
table inet {NFT_TABLE_PREFIX}{sandbox.id} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    {dnat}
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    {dnat_local}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{veth}" ct state established,related accept
    {allow_in}
    iifname "{veth}" drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
{forward}
    oifname "{veth}" ct state established,related accept
    iifname "{veth}" drop
    oifname "{veth}" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{masquerade}
  }}
}}
"""


def namespace_rules(sandbox: Sandbox) -> str:
    """The workspace namespace's own table: only the proxy may connect in, only the allowed ports out."""
    gw = sandbox.gateway
    loop_ports = list(sandbox.host_ports) + [e.port for e in sandbox.remote if is_loopback(e.host)]
    out = [f"ip daddr {gw} tcp dport {_ports(loop_ports)} accept"] if loop_ports else []
    out += [f"ip daddr {e.host} tcp dport {e.port} accept" for e in sandbox.remote if not is_loopback(e.host)]
    allowed_out = "\n    ".join(out)
    return f"""
table inet tre-seal {{
  chain input {{
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    iifname "eth0" ip saddr {gw} tcp dport {SERVER_PORT} accept
  }}
  chain output {{
    type filter hook output priority filter; policy drop;
    oif "lo" accept
    ct state established,related accept
    {allowed_out}
  }}
}}
"""


def _make_tmp(sandbox: Sandbox) -> None:
    entry = pwd.getpwnam(sandbox.unix_user)
    root = Path(sandbox.tmp)
    root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.mkdir(mode=0o700)
    for name in SHARED_WRITABLE_DIRS:
        path = root / name.strip("/").replace("/", "-")
        path.mkdir(mode=0o700)
        os.chown(path, entry.pw_uid, entry.pw_gid)


# Inside the server's process ------------------------------------------------------------------------


def _check(result: int, doing: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{doing}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def enter_sandbox(sandbox: Sandbox, home_mountpoint: str) -> None:
    """Move the calling process (root, after fork, before exec) into the sandbox.

    Joins the cgroup, then the network namespace, then a new mount namespace in which the shared
    writable directories and the researcher's home are replaced by this workspace's own. Called from the
    spawner's ``preexec_fn`` before it drops to the researcher's uid.
    """
    pid = str(os.getpid())
    for path in sandbox.cgroup_dirs():
        (path / "cgroup.procs").write_text(pid)
    fd = os.open(f"/run/netns/{sandbox.netns}", os.O_RDONLY)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNET), "setns(net)")
    finally:
        os.close(fd)
    _check(_libc.unshare(_CLONE_NEWNS), "unshare(mount)")
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
    # Sources first: the home (and a data directory kept visible) may lie under a directory replaced below.
    if sandbox.home and os.path.isdir(home_mountpoint):
        _mount(sandbox.home, home_mountpoint, None, _MS_BIND)
    hidden = [
        kept
        for kept in sandbox.keep
        if os.path.isdir(kept) and any(kept.startswith(d.rstrip("/") + "/") for d in SHARED_WRITABLE_DIRS)
    ]
    held = {kept: os.open(kept, os.O_PATH | os.O_DIRECTORY) for kept in hidden}
    for name in SHARED_WRITABLE_DIRS:
        if os.path.isdir(name):
            _mount(os.path.join(sandbox.tmp, name.strip("/").replace("/", "-")), name, None, _MS_BIND)
    shm = "/dev/shm"  # noqa: S108 - a fresh tmpfs of this workspace's own is mounted over it
    if os.path.isdir(shm):
        _mount("tmpfs", shm, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777,size=25%")
    for kept, fd in held.items():
        os.makedirs(kept, mode=0o711, exist_ok=True)  # root's, inside this workspace's own /tmp
        _mount(f"/proc/self/fd/{fd}", kept, None, _MS_BIND)
        os.close(fd)


# Stopping and sweeping -------------------------------------------------------------------------------


def _procs(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_cgroup(path: Path, *, timeout: float = 10.0) -> int:
    """Kill every process in the cgroup at ``path`` (frozen first, so none can fork away); return how many."""
    if not path.is_dir():
        return 0
    killed = 0
    kill_file = path / "cgroup.kill"
    if kill_file.exists():  # cgroup v2: the kernel kills the whole subtree at once
        killed = len(_procs(path))
        _write(kill_file, "1")
    else:
        freezer = _freezer_of(path)
        if freezer is not None:
            _write(freezer / "freezer.state", "FROZEN")
        deadline = time.monotonic() + timeout
        while True:
            pids = _procs(path)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            if freezer is not None:
                _write(freezer / "freezer.state", "THAWED")  # SIGKILL is delivered when thawed
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.02)
            if freezer is not None:
                _write(freezer / "freezer.state", "FROZEN")
    deadline = time.monotonic() + timeout
    while _procs(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return killed


def _freezer_of(path: Path) -> Path | None:
    candidate = CGROUP_ROOT / "freezer" / CGROUP_PARENT / path.name
    return candidate if (candidate / "freezer.state").exists() else None


def destroy_sandbox(sandbox: Sandbox) -> int:
    """Kill every process of the workspace and remove its cgroup, namespace, veth, firewall and ``/tmp``.

    Idempotent (a part already gone is skipped); returns how many processes were killed.
    """
    killed = 0
    # The freezer first when it exists: its kill loop stops forks; then the rest of the controllers.
    dirs = sorted(sandbox.cgroup_dirs(), key=lambda p: "freezer" not in str(p))
    for path in dirs:
        killed += kill_cgroup(path)
    for path in dirs:
        with contextlib.suppress(OSError):
            path.rmdir()
    subprocess.run(
        [NFT, "delete", "table", "inet", NFT_TABLE_PREFIX + sandbox.id], capture_output=True, check=False
    )
    subprocess.run([IP, "link", "del", sandbox.host_veth], capture_output=True, check=False)
    subprocess.run([IP, "netns", "del", sandbox.netns], capture_output=True, check=False)
    if sandbox.tmp:
        shutil.rmtree(sandbox.tmp, ignore_errors=True)
    with _registry_lock(), contextlib.suppress(FileNotFoundError):
        (REGISTRY_DIR / f"{sandbox.id}.json").unlink()
    if killed:
        log.info("workspace %s of %s: killed %d processes", sandbox.id, sandbox.unix_user, killed)
    return killed


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def is_live(sandbox: Sandbox) -> bool:
    """Whether the sandbox's server and hub run (or it is young enough to be starting)."""
    if sandbox.hub_pid and not is_running(sandbox.hub_pid):
        return False
    if sandbox.server_pid:
        return is_running(sandbox.server_pid)
    return time.time() - sandbox.created < SWEEP_GRACE_SECONDS


def sweep_leftover_sandboxes() -> list[str]:
    """Remove every workspace sandbox whose server is gone (after a crash); return their ids.

    Also removes namespaces, firewall tables and cgroups named like a workspace's that no registry entry
    explains (left by a hub killed between making and recording them) once they are old enough.
    """
    removed = []
    live_ids = set()
    for sandbox in registered():
        if is_live(sandbox):
            live_ids.add(sandbox.id)
        else:
            destroy_sandbox(sandbox)
            removed.append(sandbox.id)
    known = live_ids | set(removed)
    for parent in _cgroup_parents():
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir() and child.name not in known and _older_than_grace(child):
                    kill_cgroup(child)
                    with contextlib.suppress(OSError):
                        child.rmdir()
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        for entry in netns_dir.iterdir():
            ident = entry.name.removeprefix(NETNS_PREFIX)
            if entry.name.startswith(NETNS_PREFIX) and ident not in known and _older_than_grace(entry):
                destroy_sandbox(_orphan(ident))
                removed.append(ident)
    return removed


def _older_than_grace(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > SWEEP_GRACE_SECONDS
    except OSError:
        return False


def _orphan(ident: str) -> Sandbox:
    return Sandbox(id=ident, unix_user="", project="", slot=0, subnet="0.0.0.0/30", host_ports=())


def _researcher_uids(extra_users: Iterable[str] = ()) -> dict[int, str]:
    uids = {}
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(storage.USER_PREFIX) or entry.pw_name in extra_users:
            uids[entry.pw_uid] = entry.pw_name
    return uids


def _uid_and_parent(pid: int) -> tuple[int | None, int]:
    uid, ppid = None, 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("PPid:"):
                ppid = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None, 0
    return uid, ppid


def _cgroup_of(pid: int) -> str:
    """The workspace cgroup id a process is in, or ''."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""
    match = re.search(rf"/{CGROUP_PARENT}/([0-9a-f]+)$", text, re.MULTILINE)
    return match.group(1) if match else ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class KilledProcess:
    pid: int
    unix_user: str
    command: str


def sweep_orphan_processes(extra_users: Iterable[str] = ()) -> list[KilledProcess]:
    """Kill every process of a researcher's Unix user that has no running server; return what was killed.

    Call it every minute (the scheduler of ``tre up`` does) and when the hub starts. First removes
    leftover sandboxes (:func:`sweep_leftover_sandboxes`), which kills everything in them, sealed or
    not. Then, outside any live workspace cgroup, a researcher's process (``tre-u-*``, or one of
    ``extra_users``, the configured ``unix_username`` of a user) is an orphan when the chain of its
    researcher-owned ancestors was left to init: what a ``setsid nohup`` or double fork leaves behind once
    its server stopped (an unsealed server's tree hangs from the hub; a command an operator runs with
    ``runuser`` hangs from ``runuser``). Every process of an orphaned tree is killed.
    """
    sweep_leftover_sandboxes()
    researchers = _researcher_uids(extra_users)
    if not researchers:
        return []
    live = {s.id for s in registered() if is_live(s)}
    owner: dict[int, int] = {}
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            uid, ppid = _uid_and_parent(pid)
            if uid is not None:
                owner[pid], parent[pid] = uid, ppid

    def orphaned(pid: int) -> bool:
        seen = set()
        while parent.get(pid, 0) in owner and owner[parent[pid]] in researchers and pid not in seen:
            seen.add(pid)
            pid = parent[pid]
        return parent.get(pid, 1) in (0, 1) or parent.get(pid) not in owner

    killed = []
    for pid, uid in owner.items():
        if uid not in researchers or not is_running(pid):
            continue
        group = _cgroup_of(pid)
        if (group and group in live) or not orphaned(pid):
            continue
        command = _cmdline(pid)[:200]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(KilledProcess(pid, researchers[uid], command))
    for item in killed:
        log.warning("killed orphan process %d of %s: %s", item.pid, item.unix_user, item.command)
    return killed
