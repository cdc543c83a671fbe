"""A small HTTP server for probes and metrics: /api/v1/health, /api/v1/ready, /metrics.

Plain asyncio streams: three GET routes do not justify a web framework in every pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HealthFn = Callable[[], dict[str, Any]]
ReadyFn = Callable[[], tuple[bool, dict[str, Any]]]


class ProbeServer:
    def __init__(self, *, registry: CollectorRegistry, health: HealthFn, ready: ReadyFn,
                 host: str = "0.0.0.0", port: int = 8000) -> None:
        self._registry = registry
        self._health = health
        self._ready = ready
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            status, ctype, body = self._route(method, path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path == "/api/v1/health":
            return "200 OK", "application/json", _json({"status": "ok", **self._health()})
        if path == "/api/v1/ready":
            ok, detail = self._ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, "application/json", _json({"ready": ok, **detail})
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        return "404 Not Found", "text/plain", b"not found\n"


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, default=str).encode() + b"\n"
