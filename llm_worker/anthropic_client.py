"""The Anthropic adapter: the only module that imports ``anthropic``.

One call = one ``messages.create`` with the cached system prompt and a forced
``submit_code`` tool call. The SDK's own retries are off (``max_retries=0``): the processor's
tenacity policy owns retrying, so attempts do not multiply. SDK errors become the port's
errors here:

    429 rate_limit, 529 overloaded, 5xx, 408/409, timeouts, connection errors
        -> LlmTransientError (delay from retry-after-ms / retry-after, capped)
    400, 401, 402, 403, 404, 413, other 4xx
        -> LlmPermanentError with a message that says what to fix
    an answer without a valid submit_code call (text only, truncated, wrong arguments)
        -> LlmTransientError("malformed"): asked again, its tokens still counted
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any, cast

import anthropic
from anthropic.types import TextBlockParam, ToolChoiceToolParam, ToolParam
from pydantic import ValidationError

from llm_worker.generator import (
    Generation,
    GenerationTask,
    LlmPermanentError,
    LlmTransientError,
    Submission,
)
from llm_worker.packages import with_detected_packages
from llm_worker.prompt import SUBMIT_CODE_TOOL, TOOL_NAME, render_task, system_prompt
from llm_worker.settings import LlmSettings
from pipeline.settings import ExecutionSettings
from schemas import LlmUsage

_PERMANENT: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the API rejected the request"),
    401: ("authentication", "the API key was refused; check LLM_API_KEY / ANTHROPIC_API_KEY"),
    402: ("billing", "the account cannot be billed"),
    403: ("permission", "the API key may not use this model or endpoint"),
    404: ("not_found", "not found; check LLM_MODEL and ANTHROPIC_BASE_URL"),
    413: ("request_too_large", "the request is too large for the API"),
}
_TRANSIENT: dict[int, str] = {408: "timeout", 409: "conflict", 429: "rate_limited",
                              529: "overloaded"}


class AnthropicGenerator:
    def __init__(self, llm: LlmSettings, execution: ExecutionSettings, *,
                 client: anthropic.AsyncAnthropic | None = None) -> None:
        if llm.llm_api_key is None and client is None:
            raise LlmPermanentError("LLM not configured: set LLM_API_KEY or ANTHROPIC_API_KEY",
                                    error_class="not_configured")
        llm = with_detected_packages(llm)
        self._llm = llm
        self._client = client or anthropic.AsyncAnthropic(
            api_key=llm.llm_api_key.get_secret_value() if llm.llm_api_key else None,
            base_url=llm.anthropic_base_url,  # None: the SDK reads ANTHROPIC_BASE_URL
            max_retries=0,
            timeout=llm.llm_timeout_s,
        )
        # Built once: the same bytes every call, so the API's prompt cache hits.
        self._system: list[TextBlockParam] = [{
            "type": "text", "text": system_prompt(llm, execution),
            "cache_control": {"type": "ephemeral"},
        }]
        self._tools = [cast(ToolParam, SUBMIT_CODE_TOOL)]
        self._tool_choice: ToolChoiceToolParam = {
            "type": "tool", "name": TOOL_NAME, "disable_parallel_tool_use": True}

    async def generate(self, task: GenerationTask) -> Generation:
        model = self._llm.llm_model
        started = time.monotonic()
        try:
            message = await self._client.messages.create(
                model=model,
                max_tokens=self._llm.llm_max_tokens,
                system=self._system,
                tools=self._tools,
                tool_choice=self._tool_choice,
                messages=[{"role": "user", "content": render_task(
                    task.prompt, task.inputs, task.history, task.requested_route)}],
            )
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from None
        except anthropic.APITimeoutError:
            raise LlmTransientError(
                f"LLM API timed out after {self._llm.llm_timeout_s:g}s (LLM_TIMEOUT_S)",
                error_class="timeout") from None
        except anthropic.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise LlmTransientError(f"LLM API unreachable: {cause}",
                                    error_class="connection") from None
        except anthropic.APIResponseValidationError as exc:
            raise LlmTransientError(f"LLM API answered with an unexpected body: {exc.message}",
                                    error_class="malformed") from None
        latency = time.monotonic() - started
        usage = _usage(message, model)
        return Generation(submission=_submission(message, usage), usage=usage,
                          latency_s=latency)

    async def close(self) -> None:
        await self._client.close()

    def _status_error(self, exc: anthropic.APIStatusError) -> Exception:
        status = exc.status_code
        detail = _api_message(exc)
        transient = _TRANSIENT.get(status) or ("server_error" if status >= 500 else None)
        if transient is not None:
            return LlmTransientError(f"LLM API error {status} ({transient}): {detail}",
                                     error_class=transient, delay=self._retry_after(exc))
        error_class, hint = _PERMANENT.get(status, ("client_error", "the API refused the call"))
        if status == 404:
            hint = f"not found; check LLM_MODEL={self._llm.llm_model!r} and ANTHROPIC_BASE_URL"
        return LlmPermanentError(f"LLM API error {status} ({error_class}): {detail} — {hint}",
                                 error_class=error_class, status=status)

    def _retry_after(self, exc: anthropic.APIStatusError) -> float | None:
        delay = _retry_after_s(exc.response.headers)
        return None if delay is None else min(delay, self._llm.llm_max_retry_after_s)


def _retry_after_s(headers: Any) -> float | None:
    """``retry-after-ms`` (Anthropic's, precise) first, then ``retry-after`` (seconds or an
    HTTP date)."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        if (value := headers.get("retry-after")) is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (ValueError, TypeError, OverflowError):
        return None


def _api_message(exc: anthropic.APIStatusError) -> str:
    kind = getattr(exc, "type", None)
    text = getattr(exc, "api_message", None) or exc.message
    return f"{kind}: {text}" if kind else str(text)


def _usage(message: anthropic.types.Message, model: str) -> LlmUsage:
    u = message.usage
    return LlmUsage(
        model=message.model or model,
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_read_tokens=u.cache_read_input_tokens or 0,
        cache_write_tokens=u.cache_creation_input_tokens or 0,
    )


def _submission(message: anthropic.types.Message, usage: LlmUsage) -> Submission:
    calls = [b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME]
    if not calls:
        kinds = ", ".join(b.type for b in message.content) or "nothing"
        raise LlmTransientError(
            f"LLM answer did not call {TOOL_NAME} (stop_reason={message.stop_reason}, "
            f"content: {kinds}); asking again", error_class="malformed", usage=usage)
    try:
        return Submission.model_validate(calls[0].input)
    except ValidationError as exc:
        cut = " (cut at LLM_MAX_TOKENS)" if message.stop_reason == "max_tokens" else ""
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise LlmTransientError(
            f"LLM {TOOL_NAME} arguments invalid{cut}: {where}: {first['msg']}; asking again",
            error_class="malformed", usage=usage) from None
