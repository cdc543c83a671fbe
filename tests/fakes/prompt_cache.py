"""Prompt caching as the Messages API reports it, for the fake server.

What is modelled (Anthropic's prompt-caching docs):

- The prompt renders in the order ``tools`` -> ``system`` -> ``messages``; a
  ``cache_control`` breakpoint on a block caches the whole prefix up to and including that
  block, so a breakpoint on the last system block covers tools and system together.
- A prefix is cached under its exact bytes (here: the model, then each block as sent, minus
  its ``cache_control``, in order). One byte different anywhere before the breakpoint is a
  different entry: a miss and a new write.
- A prefix shorter than the model's minimum cacheable length is not cached, silently: no
  error, no write, its tokens are plain ``input_tokens``.
- ``usage`` splits the request's input tokens three ways: ``cache_read_input_tokens`` (the
  longest prefix found written before), ``cache_creation_input_tokens`` (from there to the
  last breakpoint that is long enough, written now), ``input_tokens`` (the rest: after the
  last breakpoint, or everything when nothing can be cached).
- At most 4 breakpoints per request (more is a 400 ``invalid_request_error``).
- An entry lives 5 minutes (``ttl: "1h"``: an hour), refreshed by each read, and can be read
  only once the response that wrote it has begun: requests sent concurrently with the first
  one all write.

Not modelled: the real tokenizer (tokens are estimated at 4 characters each, which if
anything undercounts prose and so reaches the minimum later than the API would), the
tool-use system prompt the API adds when tools are given (its tokens are not counted at
all), the 20-block lookback for hits at unmarked earlier block boundaries, cache isolation
between organisations/workspaces, and the top-level automatic ``cache_control``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_BREAKPOINTS = 4
#: Minimum cacheable prompt length in tokens, by model name prefix (the docs' table).
MIN_CACHEABLE: tuple[tuple[str, int], ...] = (
    ("claude-opus-4-6", 4096), ("claude-opus-4-5", 4096), ("claude-haiku-4-5", 4096),
    ("claude-sonnet-4-6", 2048), ("claude-3-5-haiku", 2048), ("claude-3-haiku", 2048),
    ("claude-sonnet-4-5", 1024), ("claude-opus-4-1", 1024), ("claude-opus-4", 1024),
    ("claude-sonnet-4", 1024), ("claude-3-7-sonnet", 1024),
)
#: For a model not in the table (a newer one): the newest Sonnet's minimum. Strict on
#: purpose; a test may pass its own.
DEFAULT_MIN_CACHEABLE = 2048
TTL_S = {"5m": 300.0, "1h": 3600.0}


def min_cacheable_tokens(model: str) -> int:
    for prefix, tokens in MIN_CACHEABLE:
        if model.startswith(prefix):
            return tokens
    return DEFAULT_MIN_CACHEABLE


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class CacheRequestError(ValueError):
    """A request the API refuses (400 invalid_request_error)."""


@dataclass(frozen=True)
class _Block:
    data: bytes  # the block as sent, without its cache_control
    tokens: int
    cache_control: dict[str, Any] | None


def _block(raw: Any, text_of: Callable[[Any], str]) -> _Block:
    control = raw.pop("cache_control", None) if isinstance(raw, dict) else None
    data = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()
    return _Block(data, estimate_tokens(text_of(raw)), control)


def _text(block: Any) -> str:
    if isinstance(block, dict) and isinstance(block.get("text"), str):
        return str(block["text"])
    return json.dumps(block, ensure_ascii=False)


def render(body: dict[str, Any]) -> list[_Block]:
    """The request's blocks in the API's render order: tools, system, messages."""
    body = json.loads(json.dumps(body))  # blocks are popped from a copy
    blocks = [_block(tool, lambda t: json.dumps(t, ensure_ascii=False))
              for tool in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    blocks += [_block(b, _text) for b in system or []]
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        role = json.dumps(message.get("role")).encode()
        for b in content or []:
            block = _block(b, _text)
            blocks.append(_Block(role + block.data, block.tokens, block.cache_control))
    return blocks


@dataclass
class _Entry:
    expires: float
    ttl_s: float


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    #: Entries this request writes, made readable by :meth:`PromptCache.commit`.
    writes: tuple[tuple[str, float], ...] = ()

    def as_usage(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens}


class PromptCache:
    """One organisation's prompt cache. ``min_tokens`` overrides the per-model minimum."""

    def __init__(self, *, min_tokens: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._min_tokens = min_tokens
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def usage(self, body: dict[str, Any]) -> CacheUsage:
        """What a request reads and writes, as of its arrival. Raises CacheRequestError."""
        model = str(body.get("model", ""))
        blocks = render(body)
        marks = [i for i, b in enumerate(blocks) if b.cache_control is not None]
        if len(marks) > MAX_BREAKPOINTS:
            raise CacheRequestError(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control "
                                    f"may be provided. Found {len(marks)}.")
        for i in marks:
            control = blocks[i].cache_control or {}
            if control.get("type") != "ephemeral" or control.get("ttl", "5m") not in TTL_S:
                raise CacheRequestError(f"cache_control: unsupported value {control!r}")
        total = sum(b.tokens for b in blocks)
        minimum = self._min_tokens if self._min_tokens is not None else (
            min_cacheable_tokens(model))
        now = self._clock()
        digest = hashlib.sha256(model.encode() + b"\0")
        upto: list[tuple[int, str, float]] = []  # (prefix tokens, key, ttl) per breakpoint
        tokens = 0
        for block in blocks:
            digest.update(len(block.data).to_bytes(8, "big") + block.data)
            tokens += block.tokens
            if block.cache_control is not None:
                ttl = TTL_S[block.cache_control.get("ttl", "5m")]
                upto.append((tokens, digest.copy().hexdigest(), ttl))
        read = 0
        for prefix_tokens, key, _ in upto:
            entry = self._entries.get(key)
            if entry is not None and now < entry.expires:
                read = max(read, prefix_tokens)
                entry.expires = now + entry.ttl_s  # a read refreshes the entry
        writes = tuple((key, ttl) for prefix_tokens, key, ttl in upto
                       if prefix_tokens >= minimum and prefix_tokens > read)
        written = max((t for t, _, _ in upto if t >= minimum), default=0)
        creation = max(0, written - read)
        return CacheUsage(total - read - creation, creation, read, writes)

    def commit(self, usage: CacheUsage) -> None:
        """The response has begun: what the request wrote can now be read."""
        now = self._clock()
        for key, ttl in usage.writes:
            entry = self._entries.get(key)
            if entry is None or entry.expires <= now:
                self._entries[key] = _Entry(now + ttl, ttl)
