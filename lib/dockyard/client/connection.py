"""The connection to the gateway: where it is, how to reach it, and one clear line if not.

Where (an explicit host — the CLI's ``-H`` — else ``$DOCKYARD_HOST``, else the first socket you
may use of)::

    $XDG_RUNTIME_DIR/dockyard/dockyard.sock          your own platform
    ${DOCKYARD_STATE_DIR:-~/.local/share/dockyard}/dockyard.sock    the same, without XDG_RUNTIME_DIR
    /run/dockyard/dockyard.sock                      a platform root started (dockyard up as root)

A socket that is there but not yours to use (root's, without the dockyard group) is skipped; it
is named in a "permission denied" only when none of them is usable.

``-H`` takes ``unix:///path``, ``tcp://host:port`` or ``host:port``. TCP goes in the clear unless
TLS is asked for, like docker: ``--tlsverify`` (``$DOCKYARD_TLS_VERIFY``) or any of ``--tlscacert
--tlscert --tlskey``, whose defaults are ``ca.pem cert.pem key.pem`` in ``$DOCKYARD_CERT_PATH``
(default ``~/.dockyard``). The gateway refuses TCP clients without a certificate its CA signed.

Standard library only until a channel is made, so parsing stays fast.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.core.errors import InvalidArgument, PermissionDenied, Unavailable

if TYPE_CHECKING:
    import grpc

    from dockyard.adapters.grpc.tls import ClientTls

SYSTEM_SOCKET = Path("/run/dockyard/dockyard.sock")


def socket_candidates() -> list[Path]:
    """Where a local gateway's socket may be, in the order they are tried: yours, then root's."""
    found = []
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        found.append(Path(runtime) / "dockyard" / "dockyard.sock")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    found.append(
        Path(os.environ.get("DOCKYARD_STATE_DIR") or os.path.join(data_home, "dockyard")) / "dockyard.sock"
    )
    run_dir = os.environ.get("DOCKYARD_RUN_DIR")
    found.append(Path(run_dir) / "dockyard.sock" if run_dir else SYSTEM_SOCKET)
    return found


def _usable(path: Path) -> bool | None:
    """True: a socket we may connect to; False: one is there that we may not use; None: none."""
    try:
        if not path.exists():
            return None
    except PermissionError:
        try:  # its own directory is there, closed to us (/run/dockyard outside the group): refused
            return False if path.parent.is_dir() else None
        except PermissionError:  # somewhere further up we may not look (another user's home)
            return None
    return os.access(path, os.R_OK | os.W_OK)


def default_host() -> str:
    """The first candidate socket this user may connect to.

    Else the first one that is there but not for us (the error then says "permission denied"),
    else the first candidate (the error then says nothing listens there). Your own platform
    comes before root's, so running both needs no ``-H``.
    """
    candidates = socket_candidates()
    refused = None
    for path in candidates:
        usable = _usable(path)
        if usable:
            return f"unix://{path}"
        if usable is False and refused is None:
            refused = path
    return f"unix://{refused or candidates[0]}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved ``-H``: the grpc target, what to print, and TLS for a TCP gateway."""

    target: str  # unix:/abs/path or host:port
    tls: ClientTls | None = None

    @property
    def socket(self) -> Path | None:
        return Path(self.target.removeprefix("unix:")) if self.target.startswith("unix:") else None

    def __str__(self) -> str:
        path = self.socket
        return f"unix://{path}" if path is not None else f"tcp://{self.target}"

    @classmethod
    def parse(cls, host: str, tls: ClientTls | None = None) -> Endpoint:
        """``unix:///p``, ``unix:/p``, ``/p``, ``tcp://h:p`` or ``h:p``; TLS applies to TCP only."""
        text = host.strip()
        if text.startswith("unix:") or text.startswith("/"):
            path = text.removeprefix("unix:")
            path = path[2:] if path.startswith("//") else path
            if not path:
                raise InvalidArgument(f"-H {host}: no socket path")
            return cls(f"unix:{os.path.abspath(path)}")
        hostport = text.removeprefix("tcp://")
        name, _, port = hostport.rpartition(":")
        if "://" in hostport or not name or not port.isdigit():
            raise InvalidArgument(f"-H {host}: expected unix:///path, tcp://host:port or host:port")
        return cls(hostport, tls)


def client_tls(
    verify: bool = False, cacert: str | None = None, cert: str | None = None, key: str | None = None
) -> ClientTls | None:
    """docker's TLS for a TCP gateway: asked for by ``verify`` or any of the files, whose defaults
    are ``ca.pem cert.pem key.pem`` in ``$DOCKYARD_CERT_PATH`` (default ``~/.dockyard``); None
    without any."""
    if not (verify or cacert or cert or key):
        return None
    from dockyard.adapters.grpc.tls import ClientTls

    base = Path(os.environ.get("DOCKYARD_CERT_PATH") or os.path.expanduser("~/.dockyard"))
    ca = Path(cacert) if cacert else base / "ca.pem"
    cert_path = Path(cert) if cert else base / "cert.pem"
    key_path = Path(key) if key else base / "key.pem"
    if cert is None and key is None and not (cert_path.exists() and key_path.exists()):
        return ClientTls(ca)
    return ClientTls(ca, cert_path, key_path)


def resolve(host: Endpoint | str | None = None, tls: ClientTls | None = None) -> Endpoint:
    """The gateway at ``host`` (``unix:///p``, ``tcp://h:p``, ``h:p``), else ``$DOCKYARD_HOST``,
    else the first local socket you may use."""
    if isinstance(host, Endpoint):
        return host
    return Endpoint.parse(host or os.environ.get("DOCKYARD_HOST") or default_host(), tls)


def _check_socket(path: Path) -> None:
    """One connect to a unix socket, so that "no platform" and "not allowed" are clear lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(os.fspath(path))
        except (FileNotFoundError, NotADirectoryError):
            raise Unavailable(
                f"no Dockyard gateway at unix://{path}: is `dockyard up` running? "
                "(-H or DOCKYARD_HOST picks another)"
            ) from None
        except PermissionError:
            raise PermissionDenied(
                f"permission denied on unix://{path}: only root and members of the `{_group_of(path)}` "
                "group may use Dockyard (an admin can add you: usermod -aG dockyard $USER)"
            ) from None
        except OSError as exc:
            if exc.errno != errno.ECONNREFUSED:
                raise Unavailable(f"cannot reach the gateway at unix://{path}: {exc.strerror}") from None
            raise Unavailable(f"nothing answers at unix://{path} (`dockyard up` is not running)") from None


def _group_of(path: Path) -> str:
    for candidate in (path, path.parent):
        try:
            return grp.getgrgid(candidate.stat().st_gid).gr_name
        except (OSError, KeyError):
            continue
    return "dockyard"


def channel(host: Endpoint | str) -> grpc.Channel:
    """A blocking channel to the gateway; a unix socket is probed first (one line if unusable)."""
    import grpc

    where = host if isinstance(host, Endpoint) else Endpoint.parse(host)
    options = [("grpc.enable_retries", 1)]
    if where.socket is not None:
        _check_socket(where.socket)
        return grpc.insecure_channel(where.target, options=options)
    if where.tls is not None:
        tcp = grpc.secure_channel(where.target, where.tls.channel_credentials(), options=options)
    else:
        tcp = grpc.insecure_channel(where.target, options=options)
    _check_tcp(tcp, where)
    return tcp


def _check_tcp(ch: grpc.Channel, where: Endpoint, timeout: float = 10.0) -> None:
    """Connect once (TCP + TLS handshake): a refusal is one line saying what the gateway wants."""
    import threading

    import grpc

    settled = threading.Event()
    state: list[grpc.ChannelConnectivity] = []

    def seen(now: grpc.ChannelConnectivity) -> None:
        if now in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            state.append(now)
            settled.set()

    ch.subscribe(seen, try_to_connect=True)
    try:
        settled.wait(timeout)
    finally:
        ch.unsubscribe(seen)
    if state and state[0] == grpc.ChannelConnectivity.READY:
        return
    ch.close()
    if where.tls is None:
        hint = "a TCP gateway accepts only mutual TLS: --tlsverify with DOCKYARD_CERT_PATH"
    elif where.tls.cert is None:
        hint = "it accepts only clients with a certificate its CA signed: --tlscert/--tlskey"
    else:
        hint = f"is {where.tls.cert} signed by the gateway's CA?"
    raise Unavailable(f"cannot connect to the gateway at {where}: nothing answers, or it refused us ({hint})")


def list_all(method: Any, request: Any, field: str, **kwargs: Any) -> list[Any]:
    """Every item of a paged List RPC (``method`` a stub's List, ``field`` the response's
    repeated field): asks for page after page until ``next_page_token`` is ""."""
    items: list[Any] = []
    while True:
        response = method(request, **kwargs)
        items.extend(getattr(response, field))
        if not response.next_page_token:
            return items
        request.page_token = response.next_page_token
