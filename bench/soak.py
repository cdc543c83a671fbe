"""Soak: N requests through separate worker processes on Event Hubs (the loopback peer,
checkpoints in Azurite behind a proxy) while faults are injected at random; then the
figures that say whether the pipeline kept its promises.

    python bench/soak.py [-n 10000] [--executors 2] [--llm-workers 1] [--fault-every 4]
                         [--seed S]

Faults, one at a time, every ``--fault-every`` seconds on average: a worker SIGKILLed (and
started again), every AMQP link dropped, the broker frozen, sends refused, the checkpoint
store down. Prints: answered, lost (must be 0), duplicated results (extra copies a consumer
dedupes), re-executions (extra copies that differ from the first: the code ran again),
the max checkpoint lag seen (events behind, summed over partitions, per consumer group),
the lag at the end (0: checkpoints reached the end), and the faults injected.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llmexec.assembly import EXECUTOR_GROUP, LLM_GROUP
from pipeline.bus.eventhubs import EventHubsBus
from pipeline.bus.ports import PartitionContext, ReceivedEvent
from pipeline.bus.settings import BusSettings
from pipeline.errors import TransientError
from pipeline.observability.logging import configure_logging
from producers.client import RequestProducer
from schemas import DecodeError, ExecutionRequest, ExecutionResult, HubNames, decode_event
from tests.chaos.blobproxy import BlobProxy
from tests.eventhubs_peer import EventHubsPeer
from tests.eventhubs_peer.azurite import azurite_blob

ROOT = Path(__file__).resolve().parents[1]
HUBS = HubNames()
PARTITIONS = 4
IDLE_GIVE_UP_S = 120.0


@dataclass
class Workers:
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        kind = name.split("-")[0]
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "llmexec", "worker", kind, "--port", "0"],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RawResults:
    """A partition receiver that hands on every result copy it reads."""

    def __init__(self) -> None:
        self.on_result: Callable[[ExecutionResult], None] = lambda _: None

    async def on_open(self, ctx: PartitionContext) -> None: ...

    async def on_close(self, ctx: PartitionContext, reason: str) -> None: ...

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None:
        for event in events:
            with contextlib.suppress(DecodeError):
                decoded = decode_event(event.body)
                if isinstance(decoded, ExecutionResult):
                    self.on_result(decoded)


async def lag(peer: EventHubsPeer, bus: EventHubsBus, hub: str, group: str) -> int:
    covered = {c.partition_id: c.sequence_number for c in await bus.list_checkpoints(hub, group)}
    behind = 0
    for pid in map(str, range(PARTITIONS)):
        events = peer.events(hub, pid)
        if events:
            behind += events[-1].sequence_number - covered.get(pid, -1)
    return behind


async def soak(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with azurite_blob() as storage:
        async with EventHubsPeer(hubs={h: PARTITIONS for h in HUBS.all()}) as peer, \
                BlobProxy(storage) as proxy:
            container = f"soak-{uuid.uuid4().hex[:8]}"
            env = {**os.environ, "PYTHONPATH": str(ROOT),
                   "EVENT_HUB_CONNECTION_STRING": peer.connection_string,
                   "STORAGE_CONNECTION_STRING": proxy.connection_string,
                   "CHECKPOINT_CONTAINER": container, "CHECKPOINT_INTERVAL_S": "1",
                   "EVENTHUB_LOAD_BALANCING_INTERVAL_S": "1", "EVENTHUB_OWNERSHIP_EXPIRY_S": "10",
                   "TRANSIENT_RETRIES": "2", "RETRY_BACKOFF_S": "0.2", "RETRY_BACKOFF_MAX_S": "2",
                   "CHECKPOINT_TIMEOUT_S": "3", "SHUTDOWN_GRACE_S": "5", "LOG_LEVEL": "ERROR",
                   "LOG_FORMAT": "json"}
            direct = BusSettings(event_hub_connection_string=peer.connection_string,  # type: ignore[arg-type]
                                 storage_connection_string=storage,  # type: ignore[arg-type]
                                 checkpoint_container=container)
            bus = EventHubsBus(direct, load_balancing_interval_s=1.0, ownership_expiry_s=10.0)
            workers = Workers(env)
            names = ([f"llm-{i}" for i in range(args.llm_workers)]
                     + [f"executor-{i}" for i in range(args.executors)])
            for name in names:
                workers.start(name)
            raw = RawResults()
            reading = bus.subscribe(HUBS.results, "soak")  # every copy, not deduplicated
            seen: list[ExecutionResult] = []
            first_body: dict[tuple[str, int], str] = {}
            faults: Counter[str] = Counter()
            max_lag = {LLM_GROUP: 0, EXECUTOR_GROUP: 0}
            ids = [f"s{i}" for i in range(args.n)]
            started = time.monotonic()
            last_progress = time.monotonic()

            def on_result(result: ExecutionResult) -> None:
                nonlocal last_progress
                seen.append(result)
                first_body.setdefault(result.dedupe_key, result.model_dump_json())
                last_progress = time.monotonic()

            raw.on_result = on_result

            async def produce() -> None:
                producer = RequestProducer(bus.publisher(), HUBS.requests)
                for i in range(0, args.n, 200):
                    chunk = [ExecutionRequest(request_id=rid, code=f"print({j} * {j})")
                             for j, rid in enumerate(ids[i:i + 200], start=i)]
                    while True:
                        try:
                            await producer.submit_many(chunk)
                            break
                        except TransientError:
                            await asyncio.sleep(0.5)  # the broker is refusing: our doing

            async def inject() -> None:
                while True:
                    await asyncio.sleep(rng.expovariate(1 / args.fault_every))
                    fault = rng.choice(["kill", "kill", "drop_links", "freeze", "refuse",
                                        "store_down"])
                    faults[fault] += 1
                    if fault == "kill":
                        victim = rng.choice(names)
                        workers.kill(victim)
                        await asyncio.sleep(rng.uniform(0, 2))
                        workers.start(victim)
                    elif fault == "drop_links":
                        await peer.drop_connections()
                    else:
                        on, off = {"freeze": (peer.faults.freeze, peer.faults.thaw),
                                   "refuse": (peer.faults.refuse_sends, peer.faults.accept_sends),
                                   "store_down": (proxy.down, proxy.up)}[fault]
                        on()
                        await asyncio.sleep(rng.uniform(1, 5))
                        off()

            async def watch_lag() -> None:
                while True:
                    await asyncio.sleep(1)
                    with contextlib.suppress(Exception):
                        for hub, group in ((HUBS.requests, LLM_GROUP),
                                           (HUBS.executions, EXECUTOR_GROUP)):
                            max_lag[group] = max(max_lag[group], await lag(peer, bus, hub, group))

            collecting = asyncio.create_task(reading.run(raw))
            watching = asyncio.create_task(watch_lag())
            await produce()
            injecting = asyncio.create_task(inject())
            try:
                while {r.request_id for r in seen} < set(ids):
                    if time.monotonic() - last_progress > IDLE_GIVE_UP_S:
                        break
                    if time.monotonic() - started > args.faults_for and not injecting.done():
                        injecting.cancel()
                    await asyncio.sleep(0.5)
            finally:
                injecting.cancel()
                peer.faults.thaw()
                peer.faults.accept_sends()
                proxy.up()
            answered_at = time.monotonic() - started
            # Checkpoints must reach the end without a restart.
            end_lag = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                end_lag = {g: await lag(peer, bus, h, g) for h, g in
                           ((HUBS.requests, LLM_GROUP), (HUBS.executions, EXECUTOR_GROUP))}
                if not any(end_lag.values()):
                    break
                await asyncio.sleep(0.5)
            await reading.stop()
            await collecting
            watching.cancel()
            workers.stop_all()
            await bus.close()

    answered = {r.request_id for r in seen} & set(ids)
    copies = Counter(r.dedupe_key for r in seen)
    duplicated = sum(n - 1 for n in copies.values())
    rerun = sum(1 for r in seen if r.model_dump_json() != first_body[r.dedupe_key])
    print(f"requests            {args.n}")
    print(f"answered            {len(answered)}  (in {answered_at:.1f} s)")
    print(f"lost                {args.n - len(answered)}")
    print(f"duplicated results  {duplicated}")
    print(f"re-executions       {rerun}")
    print(f"max checkpoint lag  llm {max_lag[LLM_GROUP]}, executor {max_lag[EXECUTOR_GROUP]}")
    print(f"lag at the end      llm {end_lag.get(LLM_GROUP)}, executor {end_lag.get(EXECUTOR_GROUP)}")
    print(f"faults injected     {dict(faults)}")
    return 0 if len(answered) == args.n and not any(end_lag.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--llm-workers", type=int, default=1)
    parser.add_argument("--fault-every", type=float, default=4.0, help="mean seconds between faults")
    parser.add_argument("--faults-for", type=float, default=float("inf"),
                        help="stop injecting after this many seconds")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    configure_logging("ERROR", "console")
    warnings.simplefilter("ignore", ResourceWarning)
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
