"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

``POST /v1/messages`` answers with what the test scripted: ``tool_use`` messages with usage
(prompt caching modelled as the API reports it, see :mod:`tests.fakes.prompt_cache`: input
tokens estimated from the request, a prefix cached per exact bytes up to a ``cache_control``
breakpoint when it reaches the model's minimum length, read only once written), plain text
answers that skip the tool, or errors in the API's JSON shape with
``retry-after``. Replies may be delayed or held behind an :class:`asyncio.Event`. It runs on
the test's event loop (``asyncio.start_server`` on 127.0.0.1, ephemeral port), keeps
connections alive like the real API, and records every request.

    async with FakeAnthropic() as api:
        api.script(text_reply("no"), tool_reply("print(1)"))   # in order; the last repeats
        api.on("slow task", tool_reply("print(2)", delay_s=2))  # by words in the task
        settings = LlmSettings(llm_api_key="k", anthropic_base_url=api.base_url)

Standalone (bench/llm_concurrency.py runs it so its CPU is not the worker's):
``python -m tests.fakes.anthropic_server --delay 2`` prints its base URL, serves until stdin
closes, and reports its counters at ``GET /_fake/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.prompt_cache import CacheRequestError, CacheUsage, PromptCache

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable", 529: "Overloaded"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


@dataclass
class Reply:
    status: int = 200
    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "tool_use"
    #: Overrides the modelled usage (input and cache tokens come from the request).
    usage: dict[str, int] = field(default_factory=lambda: {"output_tokens": 120})
    error: dict[str, Any] | None = None  # the body of an error reply
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    gate: asyncio.Event | None = None  # held until set


def tool_reply(code: str, *, route: str = "light", route_reason: str = "small job",
               expected_runtime_s: float = 0.5, expected_memory_mb: float = 64,
               packages: list[str] | None = None, delay_s: float = 0.0,
               gate: asyncio.Event | None = None, **extra: Any) -> Reply:
    arguments = {"code": code, "route": route, "route_reason": route_reason,
                 "expected_runtime_s": expected_runtime_s,
                 "expected_memory_mb": expected_memory_mb, "packages": packages or [],
                 **extra}
    return Reply(content=[{"type": "tool_use", "name": "submit_code", "input": arguments}],
                 delay_s=delay_s, gate=gate)


def text_reply(text: str = "Here is the code: print(1)", **kw: Any) -> Reply:
    return Reply(content=[{"type": "text", "text": text}], stop_reason="end_turn", **kw)


def error_reply(status: int, message: str = "", *, error_type: str | None = None,
                retry_after: str | None = None, **kw: Any) -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    kind = error_type or _ERROR_TYPES.get(status, "api_error")
    return Reply(status=status, headers=headers, error={
        "type": "error", "error": {"type": kind, "message": message or kind},
        "request_id": "req_fake"}, **kw)


@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def task_text(self) -> str:
        """The text of the user messages: what the model was asked."""
        parts: list[str] = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(b.get("text", "") for b in content if isinstance(b, dict))
        return "\n".join(parts)

    @property
    def system_text(self) -> str:
        system = self.body.get("system", "")
        if isinstance(system, str):
            return system
        return "".join(b.get("text", "") for b in system)


Responder = Callable[[Recorded], "Reply | Awaitable[Reply]"]


class _Queue:
    """Replies in order; the last one repeats."""

    def __init__(self, replies: tuple[Reply, ...]) -> None:
        self._replies = list(replies)

    def next(self) -> Reply:
        return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]


class FakeAnthropic:
    """``min_cache_tokens`` overrides the model's minimum cacheable prompt length."""

    def __init__(self, *, min_cache_tokens: int | None = None) -> None:
        self.requests: list[Recorded] = []
        self.replied: list[float] = []  # time.monotonic() of each reply written
        self.in_flight = 0
        self.max_in_flight = 0
        self.responder: Responder | None = None
        self._default = _Queue((tool_reply("print('hello')"),))
        self._rules: list[tuple[str, _Queue]] = []
        self.cache = PromptCache(min_tokens=min_cache_tokens)
        #: Summed usage of every message answered (input, cache_creation, cache_read).
        self.tokens = {"input_tokens": 0, "cache_creation_input_tokens": 0,
                       "cache_read_input_tokens": 0}
        self.cache_writes = 0  # messages that wrote the cache
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.base_url = ""

    # -- scripting ---------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Replies for every request not matched by :meth:`on`, in order; the last repeats."""
        self._default = _Queue(replies)

    def on(self, words: str, *replies: Reply) -> None:
        """Replies for requests whose task text contains ``words``."""
        self._rules.append((words, _Queue(replies)))

    async def _reply_for(self, rec: Recorded) -> Reply:
        if self.responder is not None:
            reply = self.responder(rec)
            return await reply if isinstance(reply, Awaitable) else reply
        text = rec.task_text
        for words, queue in self._rules:
            if words in text:
                return queue.next()
        return self._default.next()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeAnthropic:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP ----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # close(): end quietly (the stream machinery reports a cancelled task)
        finally:
            self._connections.discard(task)
            writer.close()  # not awaited: a cancelled task must not wait again

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line.strip():
            return False
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await _read_body(reader, headers)
        status, payload, extra = await self._respond(method, path, headers, body)
        data = json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                "content-type: application/json", f"content-length: {len(data)}",
                f"request-id: req_{next(self._ids):06d}",
                *(f"{k}: {v}" for k, v in extra.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        self.replied.append(time.monotonic())
        return headers.get("connection", "").lower() != "close"

    async def _respond(self, method: str, path: str, headers: dict[str, str],
                       raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        if method == "GET" and path == "/_fake/stats":  # for a server in another process
            return 200, {"requests": len(self.requests), "max_in_flight": self.max_in_flight,
                         "arrived": [r.at for r in self.requests], "replied": self.replied,
                         "tokens": self.tokens, "cache_writes": self.cache_writes}, {}
        if method != "POST" or path.split("?")[0] != "/v1/messages":
            return 404, error_reply(404, f"no route {method} {path}").error or {}, {}
        # SDKs send the key as x-api-key or (newer ones) as a Bearer token.
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if not key or not headers.get("anthropic-version"):
            return 401, error_reply(401, "missing API key or anthropic-version").error or {}, {}
        body = json.loads(raw)
        rec = Recorded(path=path, headers=headers, body=body, at=time.monotonic())
        self.requests.append(rec)
        try:
            cache = self.cache.usage(body)  # as of arrival: what was written before
        except CacheRequestError as exc:
            return 400, error_reply(400, str(exc)).error or {}, {}
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = await self._reply_for(rec)
            if reply.gate is not None:
                await reply.gate.wait()
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
        finally:
            self.in_flight -= 1
        if reply.error is not None:
            return reply.status, reply.error, reply.headers
        self.cache.commit(cache)  # the response begins: its writes become readable
        return reply.status, self._message(body, reply, cache), reply.headers

    def _message(self, body: dict[str, Any], reply: Reply, cache: CacheUsage) -> dict[str, Any]:
        n = next(self._ids)
        usage = {**cache.as_usage(), **reply.usage}
        for k in self.tokens:
            self.tokens[k] += usage.get(k, 0)
        self.cache_writes += usage.get("cache_creation_input_tokens", 0) > 0
        content = [dict(block, id=f"toolu_{n:06d}") if block["type"] == "tool_use" else block
                   for block in reply.content]
        return {"id": f"msg_{n:06d}", "type": "message", "role": "assistant",
                "model": body.get("model", "?"), "content": content,
                "stop_reason": reply.stop_reason, "stop_sequence": None,
                "usage": usage}


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while (size := int((await reader.readline()).strip() or b"0", 16)) > 0:
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        return b"".join(chunks)
    return await reader.readexactly(int(headers.get("content-length", "0")))


async def _serve(delay_s: float, code: str, min_cache_tokens: int | None) -> None:
    """Serve until stdin closes; the first line on stdout is the base URL."""
    api = FakeAnthropic(min_cache_tokens=min_cache_tokens)
    api.script(tool_reply(code, delay_s=delay_s))
    print(await api.start(), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, sys.stdin.read)
    finally:
        await api.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the fake Messages API, standalone")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--code", default="print('ok')", help="code every reply submits")
    parser.add_argument("--min-cache-tokens", type=int, default=None,
                        help="minimum cacheable prefix (default: the model's)")
    args = parser.parse_args()
    asyncio.run(_serve(args.delay, args.code, args.min_cache_tokens))
