"""The Anthropic adapter: the only module that imports ``anthropic``.

The SDK's own retries are off; the processor's tenacity policy owns retrying, so SDK errors
are translated into our error tree here.
"""

from __future__ import annotations

from typing import Any

import anthropic
from pydantic import JsonValue

from llm_worker.generator import Generation
from llm_worker.prompt import SUBMIT_CODE_TOOL, render_user_message, system_prompt
from pipeline.errors import PermanentError, TransientError
from pipeline.settings import LlmSettings
from schemas import AttemptRecord, ExecRoute, LlmUsage


class AnthropicGenerator:
    def __init__(self, settings: LlmSettings, *, client: anthropic.AsyncAnthropic | None = None) -> None:
        if settings.llm_api_key is None and client is None:
            raise PermanentError("LLM not configured: set LLM_API_KEY or ANTHROPIC_API_KEY")
        self._settings = settings
        self._client = client or anthropic.AsyncAnthropic(
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            base_url=settings.anthropic_base_url,
            max_retries=0,
            timeout=settings.llm_timeout_s,
        )

    async def generate(
        self, prompt: str, *, inputs: JsonValue, history: list[AttemptRecord]
    ) -> Generation:
        try:
            message = await self._client.messages.create(
                model=self._settings.llm_model,
                max_tokens=self._settings.llm_max_tokens,
                system=[{"type": "text", "text": system_prompt(),
                         "cache_control": {"type": "ephemeral"}}],
                tools=[SUBMIT_CODE_TOOL],
                tool_choice={"type": "tool", "name": SUBMIT_CODE_TOOL["name"]},
                messages=[{"role": "user", "content": render_user_message(prompt, inputs, history)}],
            )
        except anthropic.RateLimitError as exc:
            raise TransientError(f"LLM rate limited: {exc.message}", _retry_after(exc)) from None
        except anthropic.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409, 429, 529):
                raise TransientError(f"LLM API error {exc.status_code}: {exc.message}",
                                     _retry_after(exc)) from None
            raise PermanentError(f"LLM API refused the request ({exc.status_code}): "
                                 f"{exc.message}") from None
        except (anthropic.APIConnectionError, anthropic.APITimeoutError) as exc:
            raise TransientError(f"LLM API unreachable: {exc}") from None
        return _to_generation(message, self._settings.llm_model)

    async def close(self) -> None:
        await self._client.close()


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _to_generation(message: Any, model: str) -> Generation:
    usage = LlmUsage(
        model=model,
        input_tokens=message.usage.input_tokens or 0,
        output_tokens=message.usage.output_tokens or 0,
        cache_read_tokens=getattr(message.usage, "cache_read_input_tokens", 0) or 0,
        cache_write_tokens=getattr(message.usage, "cache_creation_input_tokens", 0) or 0,
    )
    for block in message.content:
        if block.type == "tool_use" and block.name == SUBMIT_CODE_TOOL["name"]:
            args = block.input if isinstance(block.input, dict) else {}
            code = args.get("code")
            if not isinstance(code, str) or not code.strip():
                break
            route = ExecRoute.HEAVY if args.get("route") == "heavy" else ExecRoute.LIGHT
            return Generation(code=code, route_hint=route,
                              route_reason=str(args.get("route_reason", "")), usage=usage)
    raise TransientError("LLM response did not call submit_code with code; asking again")
