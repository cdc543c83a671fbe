"""What the model is told: the execution environment, the tool it must call, the task."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import JsonValue

from schemas import AttemptRecord

SUBMIT_CODE_TOOL: dict[str, Any] = {
    "name": "submit_code",
    "description": "Submit the complete Python program that answers the task.",
    "input_schema": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "A complete Python 3 program."},
            "route": {"type": "string", "enum": ["light", "heavy"],
                      "description": "light for small work, heavy for big CPU/memory work."},
            "route_reason": {"type": "string"},
        },
        "required": ["code", "route"],
    },
}


def system_prompt() -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (
        f"You write Python {version} programs that run in an isolated sandbox with no network "
        "access and no secrets. The program's input, if any, is in the variable `inputs` and "
        "in the file `inputs.json` in the working directory. Print the answer to stdout. "
        "Files written to the working directory come back as artifacts. Only the standard "
        "library is guaranteed. Always answer by calling the submit_code tool."
    )


def render_user_message(prompt: str, inputs: JsonValue, history: list[AttemptRecord]) -> str:
    parts = [f"Task:\n{prompt}"]
    if inputs is not None:
        parts.append("inputs (JSON):\n" + json.dumps(inputs)[:20_000])
    for record in history:
        parts.append(
            f"Attempt {record.attempt} failed.\nCode:\n{record.code}\n"
            f"Error: {record.error.message if record.error else 'unknown'}"
        )
    return "\n\n".join(parts)
