"""Latency and throughput of the light-execution sandbox against bare Python.

    python bench/sandbox.py [--runs 200] [--jobs 600] [--concurrency N]

Baseline: the real interpreter binary (never a pyenv shim, which adds ~55 ms) started as
``python -I -S -c 'print(1+1)'``. The sandbox runs the same snippet through
``build_sandbox(SandboxSettings(...))``. Then throughput with every core busy, and a numpy
snippet both ways when numpy is installed (the sandbox pre-imports it in the zygote).
Targets: sandbox median <= 0.6 x bare median; >= 150 trivial jobs/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

# `python bench/sandbox.py` puts bench/ first on sys.path, where bench/pipeline.py would
# shadow the pipeline package; the project is imported from its install instead.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE]

from executor_worker.sandbox import SandboxJob, SandboxSettings, build_sandbox
from executor_worker.sandbox.python_binary import is_elf, real_python

TRIVIAL = "print(1+1)"
NUMPY = "import numpy\nprint(int(numpy.arange(10).sum()))"


def summary(samples_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return ordered[0], statistics.median(ordered), p95


def show(label: str, samples_ms: list[float]) -> float:
    low, med, p95 = summary(samples_ms)
    print(f"  {label:<34} min {low:7.2f}  median {med:7.2f}  p95 {p95:7.2f} ms"
          f"  (n={len(samples_ms)})")
    return med


def bare_samples(python: str, args: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, *args], env={}, stdout=subprocess.DEVNULL, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def timed(runs: int, once: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await once()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def throughput(run: Callable[[], Awaitable[object]], jobs: int, width: int) -> float:
    queue = list(range(jobs))

    async def lane() -> None:
        while queue:
            queue.pop()
            await run()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(width)))
    return jobs / (time.perf_counter() - start)


def bare_throughput(python: str, jobs: int, width: int) -> float:
    start = time.perf_counter()
    running: list[subprocess.Popen[bytes]] = []
    for _ in range(jobs):
        if len(running) >= width:
            running.pop(0).wait()
        running.append(subprocess.Popen([python, "-I", "-S", "-c", TRIVIAL], env={},
                                        stdout=subprocess.DEVNULL))
    for proc in running:
        proc.wait()
    return jobs / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=600, help="jobs for the throughput run")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--level", default="standard")
    args = parser.parse_args()

    python = real_python()
    assert is_elf(python), f"{python} is not the real interpreter binary"
    has_numpy = importlib.util.find_spec("numpy") is not None
    settings = SandboxSettings(level=args.level, concurrency=args.concurrency,
                               preimport="numpy" if has_numpy else "")
    sandbox = build_sandbox(settings)
    await sandbox.start()
    print(f"python: {python}")
    print(f"cores: {os.cpu_count()}, concurrency: {args.concurrency}, uid {os.geteuid()}")
    print(f"sandbox layers: {', '.join(sandbox.layers())}")

    async def trivial() -> None:
        outcome = await sandbox.run(SandboxJob(job_id="bench", code=TRIVIAL, timeout_s=10))
        assert outcome.status == "succeeded" and outcome.stdout == "2\n", outcome

    await timed(20, trivial)  # warm-up: pool filled, caches hot
    print(f"\nprint(1+1), {args.runs} runs each, sequential")
    bare = show("bare python -I -S -c", bare_samples(python, ["-I", "-S", "-c", TRIVIAL],
                                                    args.runs))
    boxed = show("sandbox (zygote)", await timed(args.runs, trivial))
    print(f"  ratio of medians sandbox/bare: {boxed / bare:.2f}  (target <= 0.60)")

    print(f"\nthroughput, {args.jobs} trivial jobs, {args.concurrency} at a time")
    rate = await throughput(trivial, args.jobs, args.concurrency)
    print(f"  sandbox: {rate:7.1f} jobs/s  (target >= 150)")
    print(f"  bare:    {bare_throughput(python, args.jobs, args.concurrency):7.1f} processes/s")

    if has_numpy:
        async def numpy_job() -> None:
            outcome = await sandbox.run(SandboxJob(job_id="bench-np", code=NUMPY, timeout_s=30))
            assert outcome.status == "succeeded" and outcome.stdout == "45\n", outcome

        runs = max(20, args.runs // 4)
        print(f"\nimport numpy, {runs} runs each")
        bare_np = show("bare python -I -c", bare_samples(python, ["-I", "-c", NUMPY], runs))
        boxed_np = show("sandbox (numpy pre-imported)", await timed(runs, numpy_job))
        print(f"  ratio of medians sandbox/bare: {boxed_np / bare_np:.2f}")
    else:
        print("\nnumpy not installed: numpy comparison skipped")
    await sandbox.close()


if __name__ == "__main__":
    asyncio.run(main())
