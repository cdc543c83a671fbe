"""Render docs/dashboard.png: the shipped Grafana dashboard's panels, plotted from real
/metrics of a local run (not from Prometheus, and not a Grafana screenshot).

What runs: both worker services in this process (the real processors, probe servers and
sandbox, on the embedded memory bus), fed for ``--seconds`` with code requests (most
succeed, some fail or time out, a few undecodable events get dead-lettered, a few heavy
ones run on the local heavy runner) and prompt requests answered by the fake Anthropic API
of the tests (tests/fakes/anthropic_server.py: so the LLM panels show real calls, tokens and
latencies of our client, against a fake model). /metrics of both services is scraped every
second; each panel's PromQL is evaluated here for the shapes the dashboard uses (rate over
the scrape interval, sum/max/min by labels, histogram_quantile).

    python bench/render_dashboard.py [--seconds 60]      (needs matplotlib; from the repo root)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import sys
import time
import urllib.request
from collections import defaultdict
from contextlib import AsyncExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families

Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Sample:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Sample = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def workload(seconds: float, ports: dict[str, int]) -> list[tuple[float, Sample]]:
    from consumers.results import ResultFollower
    from llmexec import assembly
    from llmexec.embedded import embedded
    from pipeline.bus.factory import build_bus
    from pipeline.bus.ports import OutgoingEvent
    from pipeline.service import serve
    from producers.client import RequestProducer
    from schemas import ExecutionRequest, Limits, Route
    from tests.fakes.anthropic_server import FakeAnthropic, tool_reply
    from tests.fakes.llm_harness import llm_config

    series: list[tuple[float, Sample]] = []
    async with FakeAnthropic() as api, AsyncExitStack() as stack:
        for _ in range(400):
            api.on("square", tool_reply("import random\nprint(random.randint(1, 9) ** 2)",
                                        delay_s=random.uniform(0.2, 1.2)))
        cfg = embedded(llm_config(api.base_url, processor={"max_concurrency": 8}))
        bus = build_bus(cfg.bus)
        stack.push_async_callback(bus.close)
        generator = await stack.enter_async_context(assembly.open_generator(cfg))
        backends = await stack.enter_async_context(assembly.open_executor_backends(cfg))
        m_llm, m_exec = assembly.Metrics.create(), assembly.Metrics.create()
        procs = {"llm": assembly.llm_processor(bus, cfg, m_llm, generator=generator),
                 "executor": assembly.executor_processor(bus, cfg, m_exec, backends=backends)}
        stop = asyncio.Event()
        tasks = [asyncio.create_task(serve(
            name=k, processors=[p], metrics=(m_llm if k == "llm" else m_exec).pipeline,
            port=ports[k], health=dict, ready=lambda: (True, {}), grace_s=2, stop=stop))
            for k, p in procs.items()]
        follower = ResultFollower(bus, cfg.bus.hubs)
        producer = RequestProducer(bus.publisher(), cfg.bus.hubs.requests)
        started = time.monotonic()
        n = 0
        while (now := time.monotonic() - started) < seconds:
            wave = []
            for _ in range(random.randint(2, 6)):
                n += 1
                roll = random.random()
                if roll < 0.55:
                    wave.append(ExecutionRequest(request_id=f"c{n}", code=f"print({n} * 2)"))
                elif roll < 0.7:
                    wave.append(ExecutionRequest(request_id=f"p{n}", prompt=f"square {n}"))
                elif roll < 0.8:
                    wave.append(ExecutionRequest(request_id=f"f{n}", code="raise SystemExit(3)"))
                elif roll < 0.86:
                    wave.append(ExecutionRequest(
                        request_id=f"t{n}", code="import time\ntime.sleep(5)",
                        limits=Limits(timeout_s=1)))
                elif roll < 0.92:
                    wave.append(ExecutionRequest(request_id=f"h{n}", code="print('heavy')",
                                                 route=Route.HEAVY))
                else:
                    wave.append(ExecutionRequest(request_id=f"s{n}",
                                                 code="import time\ntime.sleep(0.8)\nprint(1)"))
            await producer.submit_many(wave)
            if random.random() < 0.15:
                await bus.publisher().publish(cfg.bus.hubs.requests, [
                    OutgoingEvent(b"{not json", partition_key=f"junk{n}")])
            sample: Sample = {}
            for port in ports.values():
                sample.update(await asyncio.to_thread(scrape, port))
            series.append((now, sample))
            await asyncio.sleep(1.0)
        await follower.close()
        stop.set()
        await asyncio.gather(*tasks)
    return series


# -- the PromQL shapes the dashboard uses ------------------------------------------------

SUM_RATE = re.compile(r"^(sum|max|min) (?:by \(([^)]*)\) )?\(rate\((\w+)\[[^\]]+\]\)\)$")
QUANTILE = re.compile(r"^histogram_quantile\(([\d.]+), sum by \(le, (\w+)\) "
                      r"\(rate\((\w+)_bucket\[[^\]]+\]\)\)\)$")
AGG = re.compile(r"^(sum|max|min) (?:by \(([^)]*)\) )?\((\w+)\)$")


def grouped(sample: Sample, metric: str, by: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for (name, labels), value in sample.items():
        if name == metric:
            d = dict(labels)
            out[" ".join(d.get(b, "") for b in by)].append(value)
    return out


def evaluate(expr: str, series: list[tuple[float, Sample]]) -> dict[str, list[tuple[float, float]]]:
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    window = 5  # scrapes: a rate over ~5 s
    if m := SUM_RATE.match(expr):
        by = [b.strip() for b in (m.group(2) or "").split(",") if b.strip()]
        for i in range(window, len(series)):
            (t0, a), (t1, b) = series[i - window], series[i]
            ga, gb = grouped(a, m.group(3), by), grouped(b, m.group(3), by)
            for key, values in gb.items():
                delta = max(0.0, sum(values) - sum(ga.get(key, [])))
                lines[key or "all"].append((t1, delta / (t1 - t0)))
    elif m := QUANTILE.match(expr):
        q, by, metric = float(m.group(1)), m.group(2), m.group(3) + "_bucket"
        for i in range(window, len(series)):
            (_, a), (t1, b) = series[i - window], series[i]
            per: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for (name, labels), value in b.items():
                if name != metric:
                    continue
                d = dict(labels)
                before = a.get((name, labels), 0.0)
                per[d.get(by, "")].append((float(d["le"]), value - before))
            for key, buckets in per.items():
                buckets.sort()
                total = buckets[-1][1]
                if total <= 0:
                    continue
                rank, prev_le, prev_c = q * total, 0.0, 0.0
                for le, c in buckets:
                    if c >= rank:
                        est = le if le == float("inf") else prev_le + (le - prev_le) * (
                            (rank - prev_c) / max(c - prev_c, 1e-9))
                        lines[key].append((t1, prev_le if le == float("inf") else est))
                        break
                    prev_le, prev_c = le, c
    elif m := AGG.match(expr):
        op = {"sum": sum, "max": max, "min": min}[m.group(1)]
        by = [b.strip() for b in (m.group(2) or "").split(",") if b.strip()]
        for t, sample in series:
            for key, values in grouped(sample, m.group(3), by).items():
                lines[key or "all"].append((t, op(values)))
    else:
        raise SystemExit(f"render_dashboard: no evaluator for {expr!r}")
    return lines


def render(series: list[tuple[float, Sample]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads((ROOT / "k8s/monitoring/dashboards/llm-executor.json").read_text())
    panels = board["panels"]
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(22, 4.2 * rows))
    for ax, p in zip(axes.flat, panels, strict=False):
        for target in p["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5s")
            legend = target["legendFormat"]
            for key, points in sorted(evaluate(expr, series).items()):
                if not points:
                    continue
                label = re.sub(r"\{\{\w+\}\}", "{}", legend).format(*key.split(" ")) \
                    if "{{" in legend else legend
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=label[:40], linewidth=1.4)
        ax.set_title(p["title"], fontsize=10)
        ax.set_xlabel("seconds into the run", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no samples in this run", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="grey")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("llm-executor dashboard panels, from /metrics of a local run "
                 "(bench/render_dashboard.py)", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=80)
    print(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    random.seed(7)
    ports = {"llm": free_port(), "executor": free_port()}
    series = asyncio.run(workload(args.seconds, ports))
    render(series, args.out)


if __name__ == "__main__":
    main()
