"""A TCP/UDP port forwarder from the host into the node network namespace (``-p`` on user networks).

Containers on a user network sit behind a bridge in the node network namespace, which reaches the
host only through slirp4netns. slirp4netns' ``add_hostfwd`` cannot forward to an address outside
its own 10.0.2.0/24 (checked: the connection is reset), and going through it would cap throughput
at libslirp's. So, as rootless podman's rootlessport does, a forwarder of ours listens on the host
and connects to the container from inside the node namespace:

1. it binds and listens on every host address it is given, *in the host's network namespace*;
2. it joins the node network namespace with ``setns`` (it runs as root of the node's user
   namespace, which owns that network namespace); every socket it creates from then on — the
   connections to the container — lives there, while the listening sockets stay on the host;
3. each accepted connection is joined to a new connection to the container's address, and the
   bytes move in both directions with ``splice(2)`` through a pipe (no copy through user space),
   one thread per direction; a half-close is passed on as ``shutdown(SHUT_WR)``.

UDP: one socket in the node namespace per client address, replies sent back from the host socket;
idle client sockets are dropped after 60 s.

Run as a program (stdlib only, so it starts fast and outlives the service like slirp4netns)::

    python portfwd.py --netns /proc/PID/ns/net --ready-fd N  PROTO:HOST_IP:HOST_PORT:DEST_IP:DEST_PORT ...

It writes ``1`` to the ready fd once every port is bound and the namespace joined, or
``0<reason>`` and exits 1. SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import select
import signal
import socket
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
PIPE_SIZE = 1 << 20
SPLICE_CHUNK = 1 << 20
UDP_IDLE_S = 60.0


def join_netns(path: str) -> None:
    """``setns`` this process (its only thread so far) into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes ``src`` → ``dst`` with splice until EOF, then half-close ``dst``."""
    r, w = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, 1031, PIPE_SIZE)  # F_SETPIPE_SZ; best effort
        sfd, dfd = src.fileno(), dst.fileno()
        while True:
            n = os.splice(sfd, w, SPLICE_CHUNK, flags=os.SPLICE_F_MOVE)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dfd, n, flags=os.SPLICE_F_MOVE)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve_tcp_conn(client: socket.socket, dest: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(dest, timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept_loop(listener: socket.socket, dest: tuple[str, int]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            time.sleep(0.05)
            continue
        threading.Thread(target=_serve_tcp_conn, args=(client, dest), daemon=True).start()


def _udp_loop(host: socket.socket, dest: tuple[str, int]) -> None:
    """Each client address gets its own socket in the node namespace; replies go back by the host socket."""
    by_client: dict[tuple[str, int], socket.socket] = {}
    by_fd: dict[int, tuple[tuple[str, int], socket.socket]] = {}
    last: dict[tuple[str, int], float] = {}
    while True:
        ready, _, _ = select.select([host, *(s for _, s in by_fd.values())], [], [], 5.0)
        now = time.monotonic()
        for s in ready:
            if s is host:
                data, addr = host.recvfrom(65535)
                up = by_client.get(addr)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.connect(dest)
                    by_client[addr] = up
                    by_fd[up.fileno()] = (addr, up)
                last[addr] = now
                with contextlib.suppress(OSError):
                    up.send(data)
            else:
                addr, up = by_fd[s.fileno()]
                with contextlib.suppress(OSError):
                    host.sendto(up.recv(65535), addr)
                last[addr] = now
        for addr, seen in list(last.items()):
            if now - seen > UDP_IDLE_S:
                up = by_client.pop(addr)
                by_fd.pop(up.fileno(), None)
                up.close()
                del last[addr]


def parse_forward(text: str) -> tuple[str, str, int, str, int]:
    """``proto:host_ip:host_port:dest_ip:dest_port`` → its parts (ValueError when malformed)."""
    proto, host_ip, host_port, dest_ip, dest_port = text.split(":")
    if proto not in ("tcp", "udp"):
        raise ValueError(f"protocol {proto!r}")
    return proto, host_ip, int(host_port), dest_ip, int(dest_port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="portfwd")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("forwards", nargs="+")
    args = parser.parse_args(argv)
    ready = args.ready_fd

    def fail(reason: str) -> int:
        os.write(ready, b"0" + reason.encode()[:400])
        os.close(ready)
        return 1

    bound: list[tuple[str, socket.socket, tuple[str, int]]] = []
    for text in args.forwards:
        try:
            proto, host_ip, host_port, dest_ip, dest_port = parse_forward(text)
        except ValueError as exc:
            return fail(f"bad forward {text!r}: {exc}")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip or "0.0.0.0", host_port))
        except OSError as exc:
            return fail(f"bind {host_ip or '0.0.0.0'}:{host_port}/{proto}: {exc.strerror}")
        if kind == socket.SOCK_STREAM:
            s.listen(1024)
        bound.append((proto, s, (dest_ip, dest_port)))
    try:
        join_netns(args.netns)
    except OSError as exc:
        return fail(str(exc))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for proto, s, dest in bound:
        target = _accept_loop if proto == "tcp" else _udp_loop
        threading.Thread(target=target, args=(s, dest), daemon=True).start()
    os.write(ready, b"1")
    os.close(ready)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
