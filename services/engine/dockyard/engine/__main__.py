"""dockyard-engine: the Docker Engine API, as one more client of the platform's gateway.

Whoever can call it can run code as the platform's user, so it follows the gateway's rules: a
unix socket (mode 0660, group ``dockyard``), by default ``docker.sock`` beside the gateway's
``dockyard.sock``, so ``DOCKER_HOST=unix://…/docker.sock docker ps`` works; or TCP with mutual
TLS only (``docker --tlsverify -H tcp://…``), with the gateway's certificates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from dockyard.adapters import unixsock
from dockyard.adapters.grpc.tls import ClientTls
from dockyard.adapters.host import platform_group
from dockyard.client import AsyncClient
from dockyard.core import logging
from dockyard.core.errors import DockyardError, Unavailable
from dockyard.core.service import INSTANCE_ENV
from dockyard.engine.app import build

log = structlog.get_logger("dockyard.engine")

# Each follow (logs -f, attach, events) holds a worker thread of the client library for as long
# as it runs: the default pool (cpus + 4) would let six of them stall every other call.
WORKER_THREADS = 256
GATEWAY_WAIT_S = 60.0
SHUTDOWN_S = 3.0  # for in-flight requests; follows (logs -f, events) are cut, as dockerd does


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dockyard-engine", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--listen", required=True, help="unix:///path/docker.sock, or tcp://HOST:PORT (mutual TLS)"
    )
    parser.add_argument("--gateway", required=True, help="the gateway: unix:/path/dockyard.sock or host:port")
    parser.add_argument("--socket-group", default=platform_group(), help="group allowed on the socket (0660)")
    parser.add_argument(
        "--state-dir", type=Path, help="private directory for spooled build contexts (default: the temp dir)"
    )
    tls = parser.add_argument_group("mutual TLS (TCP only)")
    tls.add_argument("--tlscacert", help="PEM CA: signs the clients' certificates and the gateway's")
    tls.add_argument("--tlscert", help="PEM server certificate")
    tls.add_argument("--tlskey", help="PEM server key")
    tls.add_argument("--gateway-tlscert", help="PEM client certificate presented to a TCP gateway")
    tls.add_argument("--gateway-tlskey", help="PEM client key presented to a TCP gateway")
    args = parser.parse_args(argv)
    if not args.listen.startswith("unix:") and not (args.tlscacert and args.tlscert and args.tlskey):
        parser.error(
            f"refusing to serve {args.listen} without mutual TLS: TCP needs --tlscacert, --tlscert, --tlskey"
        )
    return args


def _server_tls(args: argparse.Namespace) -> ssl.SSLContext:
    """Only clients with a certificate from the cluster's CA get in, as on the gateway."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.tlscacert)
    context.load_cert_chain(args.tlscert, args.tlskey)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _scratch(state_dir: Path) -> Path:
    """``state_dir/contexts`` (0700), emptied of what a killed engine left there."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = state_dir / "contexts"
    scratch.mkdir(mode=0o700, exist_ok=True)
    for leftover in scratch.glob("context-*"):
        leftover.unlink(missing_ok=True)
    return scratch


async def _connect(gateway: str, tls: ClientTls | None) -> AsyncClient:
    """The gateway, waited for: `dockyard up` starts every service at once."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Unavailable),
        wait=wait_exponential(0.05, max=1.0),
        stop=stop_after_delay(GATEWAY_WAIT_S),
        reraise=True,
    ):
        with attempt:
            return await asyncio.to_thread(AsyncClient, gateway, tls)
    raise AssertionError("unreachable")


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="engine"))
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    tcp_gateway = not args.gateway.startswith("unix:")
    gateway_tls = (
        ClientTls(Path(args.tlscacert), Path(args.gateway_tlscert), Path(args.gateway_tlskey))
        if tcp_gateway
        else None
    )
    scratch = await asyncio.to_thread(_scratch, args.state_dir) if args.state_dir else None
    client = await _connect(args.gateway, gateway_tls)
    runner = web.AppRunner(
        build(client, os.environ.get(INSTANCE_ENV, ""), scratch), access_log=None, shutdown_timeout=SHUTDOWN_S
    )
    await runner.setup()
    path: Path | None = None
    if args.listen.startswith("unix:"):
        path = Path(args.listen.removeprefix("unix:").removeprefix("//"))
        site: web.BaseSite = web.SockSite(runner, unixsock.listen(path, 0o660, args.socket_group))
    else:
        host, _, port = args.listen.removeprefix("tcp://").rpartition(":")
        site = web.TCPSite(runner, host.strip("[]"), int(port), ssl_context=_server_tls(args))
    await site.start()
    log.info("docker engine api serving", listen=args.listen, gateway=args.gateway)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()
        if path is not None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        await client.close()


def main(argv: list[str] | None = None) -> int:
    logging.configure("engine")
    args = parse(argv)
    try:
        asyncio.run(serve(args))
    except (OSError, DockyardError) as exc:
        print(f"dockyard-engine: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
