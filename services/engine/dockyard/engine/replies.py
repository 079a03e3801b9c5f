"""JSON answers as docker's clients parse them.

docker's Go client reads an error body only when Content-Type is exactly ``application/json``
(aiohttp's ``json_response`` adds ``; charset=utf-8``, and the CLI then prints the raw JSON).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_reply(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(value).encode(), status=status, content_type="application/json")


def error_reply(status: int, message: str) -> web.Response:
    """``{"message": …}``; docker's own "No such container: x" starts with a capital, so ours does."""
    if message.startswith("no such "):
        message = "N" + message[1:]
    return json_reply({"message": message}, status)
