"""The node network namespace: where every user network's bridge lives, rootless.

Containers on user networks (``dockyard network create``) each keep a network namespace of their
own, joined by a veth pair to a bridge per network. The bridges cannot live in the host's
namespace (we have no CAP_NET_ADMIN there), so they live in ONE namespace the runtime creates
inside the node's user namespace — the way rootless podman keeps its "rootless netns"::

    host netns                    node netns (owned by our user ns)              container netns
    ──────────                    ─────────────────────────────────              ───────────────
    slirp4netns ◄─── tap0 10.0.2.100 (default route, MASQUERADE out)
    portfwd (-p) ─setns─► connect   dybr1 10.89.0.1/24 ◄── dyXXXXXXXX1 ═══ veth ═══ eth0 10.89.0.2
                                    dybr2 10.89.1.1/24 ◄── …                       eth0 10.89.1.2

- **Kept alive independently of the service.** The namespace is held by a holder process
  (``sleep infinity`` after ``unshare --net``, its own session), recorded with its namespace inode
  like the pause process; slirp4netns (own session too) gives it outbound access. A ``kill -9`` of
  the runtime leaves both; a new runtime finds them by their pid files. When the holder is gone
  (the node was rebooted), :meth:`NodeNetns.ensure` makes a new namespace and says so, and the
  caller re-creates every bridge.
- **Outbound**: slirp4netns only accepts packets from its own guest address (checked: a packet
  from 10.89.0.2 gets no answer), so traffic leaving through ``tap0`` is masqueraded with one
  iptables rule (nf_tables works in a user-ns-owned netns on this kernel). Without iptables the
  networks still work among themselves; only outbound access is missing, and ``outbound_error``
  says why.
- **Isolation without netfilter**: policy routing. Each bridge's packets are routed by a table of
  their own (``ip rule iif dybrN lookup 1000+N``) that knows the bridge's subnet, the default
  route through slirp4netns, and a ``prohibit`` route for every other network's subnet, so a
  container on one network gets "no route to host" for another's (checked both ways).
- **Commands**: iproute2's ``ip -batch`` run through ``nsenter --net=…``; one process per
  namespace touched. Costs: creating a network ≈ 2 processes; attaching a container ≈ 2.

Layout::

    <state>/networks/
      netns.pid     "<holder pid> <netns inode>"
      slirp.pid     the node's slirp4netns
      slirp.sock    its API socket
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from dockyard.core.errors import FailedPrecondition, Unavailable
from dockyard.core.tools import find_tool
from dockyard.runtime import outliving

log = structlog.get_logger(__name__)

TAP = "tap0"
SLIRP_GATEWAY = "10.0.2.2"
SLIRP_DNS = "10.0.2.3"
SLIRP_SUBNET = "10.0.2.0/24"
MTU = 65520
RULE_PREF = 1000
TABLE_BASE = 1000
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Bridge:
    """What the namespace needs to know of one network."""

    index: int
    subnet: str  # "10.89.0.0/24"
    gateway: str  # "10.89.0.1"

    @property
    def name(self) -> str:
        return f"dybr{self.index}"

    @property
    def table(self) -> int:
        return TABLE_BASE + self.index

    @property
    def prefix(self) -> int:
        return int(self.subnet.split("/")[1])


def veth_name(cid: str, index: int) -> str:
    """The host-side veth of container ``cid`` on network number ``index`` (≤ 15 characters)."""
    return f"dy{cid[:8]}{index:x}"


def mac_of(ip: str) -> str:
    """A container's MAC from its address (as docker does): a restarted container keeps its MAC, so
    its peers' ARP caches stay right (a new random MAC left them talking to the old one for seconds)."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def _ns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


class NodeNetns:
    """The node network namespace: its holder, its slirp4netns, commands run inside it."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.ip_binary = find_tool("ip") or "/usr/sbin/ip"
        self.slirp_binary = find_tool("slirp4netns") or "/usr/bin/slirp4netns"
        self.iptables = find_tool("iptables-nft", "iptables") or "/usr/sbin/iptables"
        self.sysctl = find_tool("sysctl") or "/usr/sbin/sysctl"
        self.outbound_error = ""

    # --- the namespace ------------------------------------------------------------------------------

    def holder(self) -> int | None:
        """The live holder's pid when it still holds the recorded namespace."""
        try:
            pid_text, ino_text = (self.state / "netns.pid").read_text().split()
            pid, ino = int(pid_text), int(ino_text)
        except (OSError, ValueError):
            return None
        if _ns_inode(pid) != ino or ino == _ns_inode(os.getpid()):
            return None
        return pid

    @property
    def path(self) -> str:
        pid = self.holder()
        if pid is None:
            raise Unavailable("the node network namespace is gone")
        return f"/proc/{pid}/ns/net"

    def ensure(self) -> bool:
        """Make sure the namespace and its slirp4netns run; True when the namespace is new.

        Blocking (spawns processes): call it from a thread.
        """
        self.state.mkdir(parents=True, exist_ok=True)
        new = False
        pid = self.holder()
        if pid is None:
            pid = self._start_holder()
            new = True
        if new or outliving.running(self.state / "slirp.pid", "slirp4netns") is None:
            self._start_slirp(pid)
            self._configure()
        return new

    def _start_holder(self) -> int:
        unshare = find_tool("unshare") or "/usr/bin/unshare"
        proc = subprocess.Popen(
            [unshare, "--net", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        own = _ns_inode(os.getpid())
        deadline = time.monotonic() + READY_TIMEOUT_S
        ino = _ns_inode(proc.pid)
        while ino in (own, None) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)  # unshare(2) then exec: a few ms
            ino = _ns_inode(proc.pid)
        if ino in (own, None) or proc.poll() is not None:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace").strip()
            raise FailedPrecondition(
                f"cannot create the node network namespace: {err or 'unshare --net failed'}"
            )
        assert proc.stderr is not None
        proc.stderr.close()
        tmp = self.state / "netns.pid.tmp"
        tmp.write_text(f"{proc.pid} {ino}\n")
        tmp.replace(self.state / "netns.pid")
        log.info("node network namespace created", holder=proc.pid)
        return proc.pid

    def _start_slirp(self, pid: int) -> None:
        self.stop_slirp()
        with contextlib.suppress(FileNotFoundError):
            (self.state / "slirp.sock").unlink()
        ready_r, ready_w = os.pipe()
        argv = [
            self.slirp_binary,
            "--configure",
            f"--mtu={MTU}",
            "--disable-host-loopback",
            "--api-socket=slirp.sock",
            f"--ready-fd={ready_w}",
            str(pid),
            TAP,
        ]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(ready_w,),
                start_new_session=True,
                cwd=self.state,
            )
        except OSError as exc:
            os.close(ready_r)
            raise Unavailable(f"cannot start slirp4netns for the node network: {exc}") from exc
        finally:
            os.close(ready_w)
        (self.state / "slirp.pid").write_text(str(proc.pid))
        try:
            import select

            readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT_S)
            if not readable or os.read(ready_r, 1) != b"1":
                raise FailedPrecondition("slirp4netns did not bring up the node network")
        finally:
            os.close(ready_r)

    def stop_slirp(self) -> None:
        pid = outliving.running(self.state / "slirp.pid", "slirp4netns")
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def _configure(self) -> None:
        """Forwarding on, masquerade out through slirp4netns (best effort: see ``outbound_error``)."""
        self.run([self.sysctl, "-q", "-w", "net.ipv4.ip_forward=1"])
        done = self.run(
            [self.iptables, "-t", "nat", "-A", "POSTROUTING", "-o", TAP, "-j", "MASQUERADE"], check=False
        )
        self.outbound_error = ""
        if done.returncode != 0:
            self.outbound_error = (
                f"containers on user networks have no outbound access: iptables failed in the node "
                f"network namespace ({done.stderr.strip() or done.returncode})"
            )
            log.warning("no outbound access for user networks", reason=self.outbound_error)

    def destroy(self) -> None:
        """Kill slirp4netns and the holder (the namespace goes with the last process in it)."""
        self.stop_slirp()
        pid = self.holder()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for name in ("netns.pid", "slirp.pid", "slirp.sock"):
            with contextlib.suppress(FileNotFoundError):
                (self.state / name).unlink()

    # --- commands -----------------------------------------------------------------------------------

    def run(
        self, argv: list[str], *, netns: str | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``netns`` (default: the node namespace). Blocking."""
        nsenter = find_tool("nsenter") or "/usr/bin/nsenter"
        done = subprocess.run(
            [nsenter, f"--net={netns or self.path}", "--", *argv],
            input=stdin,
            capture_output=True,
            text=True,
        )
        if check and done.returncode != 0:
            raise FailedPrecondition(f"{argv[0]} {argv[1] if len(argv) > 1 else ''}: {done.stderr.strip()}")
        return done

    def batch(self, commands: list[str], *, netns: str | None = None, force: bool = False) -> None:
        """``ip -batch -`` of ``commands`` in ``netns``; ``force`` goes on past failing lines."""
        if not commands:
            return
        argv = [self.ip_binary, *(["-force"] if force else []), "-batch", "-"]
        done = self.run(argv, netns=netns, stdin="\n".join(commands) + "\n", check=False)
        if done.returncode != 0 and not force:
            raise FailedPrecondition(
                f"ip: {done.stderr.strip().splitlines()[-1] if done.stderr else 'failed'}"
            )

    # --- bridges ------------------------------------------------------------------------------------

    def bridge_commands(self, bridge: Bridge, others: list[Bridge]) -> list[str]:
        b, t = bridge.name, bridge.table
        cmds = [
            f"link add {b} mtu {MTU} type bridge",
            f"addr add {bridge.gateway}/{bridge.prefix} dev {b}",
            f"link set {b} up",
            f"route add {bridge.subnet} dev {b} table {t}",
            f"route add default via {SLIRP_GATEWAY} dev {TAP} table {t}",
            f"rule add iif {b} lookup {t} pref {RULE_PREF}",
        ]
        for other in others:
            cmds.append(f"route add prohibit {other.subnet} table {t}")
            cmds.append(f"route add prohibit {bridge.subnet} table {other.table}")
        return cmds

    def add_bridge(self, bridge: Bridge, others: list[Bridge]) -> None:
        try:
            self.batch(self.bridge_commands(bridge, others))
        except FailedPrecondition:
            self.remove_bridge(bridge, others)
            raise

    def remove_bridge(self, bridge: Bridge, others: list[Bridge]) -> None:
        cmds = [
            f"link del {bridge.name}",
            f"rule del iif {bridge.name} lookup {bridge.table} pref {RULE_PREF}",
            f"route flush table {bridge.table}",
        ]
        cmds += [f"route del prohibit {bridge.subnet} table {o.table}" for o in others]
        self.batch(cmds, force=True)

    # --- container endpoints ------------------------------------------------------------------------

    def attach(
        self, bridge: Bridge, cid: str, pid: int, ifname: str, ip: str, *, default_route: bool
    ) -> None:
        """A veth from container ``pid``'s namespace (as ``ifname``, with ``ip``) to ``bridge``."""
        veth = veth_name(cid, bridge.index)
        self.batch([f"link del {veth}"], force=True)  # a leftover of a container that died
        self.batch(
            [
                f"link add {veth} mtu {MTU} type veth "
                f"peer name {ifname} mtu {MTU} address {mac_of(ip)} netns {pid}",
                f"link set {veth} master {bridge.name} up",
            ]
        )
        inside = [
            "link set lo up",
            f"addr add {ip}/{bridge.prefix} dev {ifname}",
            f"link set {ifname} up",
        ]
        if default_route:
            inside.append(f"route replace default via {bridge.gateway} dev {ifname}")
        try:
            self.batch(inside, netns=f"/proc/{pid}/ns/net")
        except FailedPrecondition:
            self.batch([f"link del {veth}"], force=True)
            raise

    def detach(self, bridge: Bridge, cid: str) -> None:
        self.batch([f"link del {veth_name(cid, bridge.index)}"], force=True)

    def set_default_route(self, pid: int, bridge: Bridge, ifname: str) -> None:
        self.batch(
            [f"route replace default via {bridge.gateway} dev {ifname}"],
            netns=f"/proc/{pid}/ns/net",
            force=True,
        )
