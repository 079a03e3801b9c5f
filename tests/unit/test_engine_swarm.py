"""The Engine API answers swarm mode's endpoints as a docker engine in no swarm does (no gateway needed).

docker-py's ``leave_swarm(force=True)`` (docker-py's own tests tear down with it) returns True only
on docker's 503; a 404 raised NotFound and failed every network test of its suite.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dockyard.client import AsyncClient
from dockyard.engine import app as engine_app
from dockyard.engine import swarm


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    # the client wants a socket that accepts; these routes never call the gateway through it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gateway:
        gateway.bind(str(tmp_path / "gw.sock"))
        gateway.listen()
        client = AsyncClient(f"unix://{tmp_path / 'gw.sock'}")
        async with TestClient(TestServer(engine_app.build(client))) as http:
            yield http
        await client.close()


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("POST", "/v1.44/swarm/leave?force=True", swarm.NOT_IN_A_SWARM),
        ("POST", "/swarm/leave", swarm.NOT_IN_A_SWARM),
        ("GET", "/v1.44/swarm", swarm.NOT_A_MANAGER),
        ("GET", "/v1.44/services", swarm.NOT_A_MANAGER),
        ("DELETE", "/v1.44/services/web", swarm.NOT_A_MANAGER),
        ("GET", "/v1.44/nodes/self", swarm.NOT_A_MANAGER),
        ("POST", "/v1.44/secrets/create", swarm.NOT_A_MANAGER),
        ("GET", "/v1.44/configs", swarm.NOT_A_MANAGER),
        ("GET", "/v1.44/tasks", swarm.NOT_A_MANAGER),
        ("POST", "/v1.44/swarm/init", swarm.UNSUPPORTED),
    ],
)
async def test_swarm_endpoints_answer_503_in_dockers_shape(
    http: TestClient,  # type: ignore[type-arg]
    method: str,
    path: str,
    message: str,
) -> None:
    reply = await http.request(method, path)
    assert reply.status == 503
    assert reply.headers["Content-Type"] == "application/json"
    assert await reply.json() == {"message": message}


async def test_a_name_that_only_starts_like_a_swarm_endpoint_is_not_one(http: TestClient) -> None:  # type: ignore[type-arg]
    reply = await http.get("/v1.44/servicesx")
    assert reply.status == 404


async def test_docker_py_leave_swarm_force_succeeds_and_without_force_raises(http: TestClient) -> None:  # type: ignore[type-arg]
    api = docker.APIClient(base_url=f"tcp://127.0.0.1:{http.port}", version="1.44")
    try:
        assert await asyncio.to_thread(api.leave_swarm, force=True) is True
        with pytest.raises(docker.errors.APIError) as raised:
            await asyncio.to_thread(api.leave_swarm)
        assert raised.value.status_code == 503
    finally:
        api.close()


async def test_version_names_the_language_where_docker_names_go(http: TestClient) -> None:  # type: ignore[type-arg]
    # docker-py's suite asserts the key; docker's CLI prints it as "Go version"
    reply = await http.get("/v1.44/version")
    body = await reply.json()
    assert body["GoVersion"].startswith("python3.")
    assert {"Version", "ApiVersion", "GitCommit", "BuildTime"} <= body.keys()
