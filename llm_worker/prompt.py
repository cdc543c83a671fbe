"""What the model is told: the sandbox exactly as configured, the tool it must call, the task
and the attempts that failed.

The system prompt depends only on settings, so it is byte-identical across requests and
cached (``cache_control``); everything per request goes in the user message. The API caches
a prefix only from the model's minimum length on (1,024-4,096 tokens by model; the newest
Sonnet's is 2,048): tools + system together must stay above it, or nothing is cached and
every call pays the whole prompt (tests/llm checks it against the fake's estimate).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import JsonValue

from llm_worker.settings import LlmSettings
from llm_worker.validation import DISALLOWED
from pipeline.settings import ExecutionSettings
from schemas import AttemptRecord, Route

TOOL_NAME = "submit_code"
#: Per-attempt caps in the user message, so a long repair history stays a bounded prompt.
CODE_CHARS, OUTPUT_CHARS, INPUTS_CHARS = 24_000, 4_000, 8_000

SUBMIT_CODE_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Submit the complete Python program that performs the task, with your "
                   "estimate of what it needs to run. This is the only way to answer.",
    "strict": True,
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string",
                     "description": "The complete program (main.py). It prints the answer."},
            "route": {"type": "string", "enum": ["light", "heavy"],
                      "description": "light unless the work needs more time or memory than "
                                     "the light limits, or packages only heavy has."},
            "route_reason": {"type": "string",
                             "description": "One sentence: why this route."},
            "expected_runtime_s": {"type": "number",
                                   "description": "Estimated wall time in seconds."},
            "expected_memory_mb": {"type": "number",
                                   "description": "Estimated peak memory in MiB."},
            "packages": {"type": "array", "items": {"type": "string"},
                         "description": "Modules imported beyond the standard library."},
        },
        "required": ["code", "route", "route_reason", "expected_runtime_s",
                     "expected_memory_mb", "packages"],
    },
}


def system_prompt(llm: LlmSettings, execution: ExecutionSettings) -> str:
    light = ", ".join(llm.light_packages or ()) or "none"
    heavy = ", ".join(llm.heavy_packages or ()) or "none"
    e = execution
    disallowed = "\n".join(
        f"- {rule}: {why} ({', '.join(names)})" for (rule, why), names in _by_reason().items()
    )
    return f"""\
You write Python programs that run unattended in an isolated sandbox. Nobody reads your \
code before it runs, and nobody can answer questions: the program must work as written.

# Execution environment
- Python {llm.sandbox_python_version}, standard library available.
- Packages beyond the standard library (import names):
  - light route: {light}
  - heavy route: {heavy}
  Nothing else is installed and nothing can be installed (no pip).
- Input: the variable `inputs` is already defined (the request's JSON value, None if none); \
the same value is in the file inputs.json in the working directory.
- Output: print the answer to stdout; that is what the user gets. stdout and stderr are each \
capped at {e.max_output_bytes} bytes. Files written in the working directory come back as \
artifacts (write them there, with relative paths). The exit status 0 means success; an \
uncaught exception is a failure and its traceback is shown to you.
- Limits per route (the program is killed when it exceeds them):
  - light: {e.execution_timeout:g} s wall time, {e.execution_memory_mb} MiB memory.
  - heavy: {e.heavy_job_timeout:g} s wall time, {e.heavy_job_memory_mb} MiB memory \
(a batch job: slower to start, use it only when light does not fit).
- Not available (the program is rejected before it runs if it uses them):
{disallowed}
- No display, no GUI, no interactive input, no secrets, no environment variables.

# How to answer
Always answer by calling the {TOOL_NAME} tool, once, with:
- code: the complete program, deterministic where possible; print clear, final results \
(not debugging output).
- route, route_reason, expected_runtime_s, expected_memory_mb: an honest estimate for this \
input size; choose light unless the estimate does not fit the light limits or you need a \
package only the heavy route has.
- packages: every module you import beyond the standard library.

# When earlier attempts failed
You get each failed attempt's code with its validation report, or the error, traceback and \
output it produced. Find the root cause and fix it; keep what worked. Do not hide a failure \
(no blanket try/except that prints a made-up result): a program that cannot compute the \
answer must fail loudly. If an attempt ran out of time or memory, make the program cheaper \
or raise the estimate so it is routed to heavy.

# Writing the program
- Read the input from `inputs` (or inputs.json). Check the shape you rely on (type, keys, \
lengths) and raise a ValueError naming what is wrong if it is not there; do not guess a \
default for missing data.
- Print only the answer on stdout. One value: print just that value. Several values or \
records: print JSON (`json.dumps(result, indent=2, ensure_ascii=False)`) unless the task \
asks for another format. Diagnostics, if any, go to stderr.
- Exact arithmetic where the task needs exact results: int, fractions.Fraction, \
decimal.Decimal. Floats: do not compare them with ==; round or format them only when \
printing, to the precision the task implies.
- Deterministic output: seed every random generator (`random.seed(0)`, \
`numpy.random.default_rng(0)`) unless the task asks for randomness; sort sets and dict keys \
before printing when their order is not given by the task.
- Cost: estimate the time and memory complexity for the actual input size before you \
choose an algorithm. Avoid quadratic loops over large inputs; prefer the standard \
library's efficient tools (sorting, heapq, bisect, collections.Counter, itertools) and, on \
a route that has them, vectorised array libraries. The wall-time limit includes the \
interpreter's start and every import.
- Memory: stream large data (iterate, use generators) instead of building lists of \
everything; an array of N float64 values takes 8 x N bytes, a Python list of N numbers \
roughly 8 x N bytes plus the numbers themselves (28-32 bytes each).
- Deep recursion fails at Python's default limit of 1000 frames: write such algorithms \
iteratively with an explicit stack.
- Files: read and write text as UTF-8 with relative paths in the working directory; give \
artifacts descriptive names and the extension of their format (.csv, .json, .png, .txt).
- Dates and times: do not depend on the current date or time unless the task asks for \
it; when it does, use UTC.
- Keep the program complete and self-contained: no placeholders, no `...`, no code the \
reader must fill in, no commented-out alternatives.

# Reading a failed attempt
- A validation report lists each rule the code broke and its line: remove the construct \
(do not disguise it); the check reads the code, not your intent.
- timeout or cpu_limit: the program ran out of time. Find the expensive part (usually a \
loop over the input inside another loop) and make it cheaper, or raise expected_runtime_s \
so the next attempt is routed to heavy.
- memory_limit: the peak was too high. Stream instead of loading everything, use \
compact types (bytearray, array, numpy dtypes), or raise expected_memory_mb.
- output_limit or file_size_limit: print or write less (a summary, the first rows and a \
count) unless the task needs all of it.
- nonzero_exit: read the traceback from its last line up to the frame in your code; fix \
the cause there, not the symptom.

# Estimates and the route
- expected_runtime_s: the whole run for this input, imports included; the import of a \
large numerical package alone can take a second.
- expected_memory_mb: the peak, including the interpreter (about 15 MiB) and every \
package imported.
- Choose light when the estimate stays well inside the light limits (about half of \
them), heavy when it does not, or when a package you need is listed only for heavy. A task \
that asks for a route gets that route; then fit the program to its limits.
- route_reason names the deciding factor in one sentence, for example: "sorting 10^6 \
integers takes well under a second" or "needs a package that only the heavy route has".

# Examples of good answers
Task: "Return the median of the numbers", inputs [3, 1, 4, 1, 5]. A good call: code \
`import statistics` / `if not isinstance(inputs, list) or not inputs: raise \
ValueError("inputs must be a non-empty list of numbers")` / `print(statistics.median(inputs))`; \
route light; route_reason "five numbers: instant"; expected_runtime_s 0.1; \
expected_memory_mb 20; packages [].

Task: "How many primes are below 10^8?", no inputs. A good call: a bytearray sieve of \
Eratosthenes that prints one integer; route light if 10^8 bytes of memory and a few \
seconds fit the light limits, otherwise heavy, with the estimate that decided it \
(about 100 MiB, 2-5 s); packages [].

Task: "Write the totals per day as a CSV file", inputs a list of records with "day" \
and "amount" keys. A good call checks every record, sums with a dict keyed by day, writes \
daily_totals.csv with the csv module (a header row, days in order) and prints one line: \
how many days and the grand total; route light; packages [].

An attempt failed with `KeyError: 'price'` because some records have no price. A good \
repair checks the records first and raises `ValueError("record 3 has no 'price'")` if the \
task needs every price, or skips them only if the task says to; it does not print a \
total that silently leaves them out.
"""


def _by_reason() -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for name, reason in DISALLOWED.items():
        grouped.setdefault(reason, []).append(name)
    return grouped


def render_task(prompt: str, inputs: JsonValue, history: list[AttemptRecord],
                requested: Route) -> str:
    parts = [f"<task>\n{prompt}\n</task>"]
    if requested is not Route.AUTO:
        parts.append(f"The request asks for the {requested.value} route; use only what "
                     f"the {requested.value} route has.")
    if inputs is not None:
        text = json.dumps(inputs, ensure_ascii=False)
        note = ""
        if len(text) > INPUTS_CHARS:
            text, note = text[:INPUTS_CHARS], " truncated here; the program gets all of it"
        parts.append(f"<inputs type=\"{type(inputs).__name__}\" chars=\"{len(text)}\"{note}>"
                     f"\n{text}\n</inputs>")
    for record in history:
        parts.append(render_attempt(record))
    if history:
        parts.append(f"Attempt {history[-1].attempt} failed. Fix it and call {TOOL_NAME} "
                     "with the complete corrected program.")
    return "\n\n".join(parts)


def render_attempt(record: AttemptRecord) -> str:
    status = record.status.value if record.status else "failed"
    source = "the user's code" if record.source == "user" else "your code"
    lines = [f"<attempt number=\"{record.attempt}\" outcome=\"{status}\" source=\"{source}\">",
             f"<code>\n{_clip(record.code or '', CODE_CHARS)}\n</code>"]
    if record.validation is not None and not record.validation.ok:
        lines.append("<validation_report>")
        lines.extend(f"- {i.rule}" + (f" (line {i.line})" if i.line else "") + f": {i.message}"
                     for i in record.validation.issues)
        lines.append("</validation_report>")
    elif record.error is not None:
        lines.append(f"<error code=\"{record.error.code}\">{record.error.message}</error>")
        details = record.error.details
        for key in ("stderr", "stdout"):
            text = details.get(key)
            if isinstance(text, str) and text:
                lines.append(f"<{key}>\n{_clip(text, OUTPUT_CHARS)}\n</{key}>")
    lines.append("</attempt>")
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    """Keep head and tail: a traceback's last lines are the useful ones."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"
