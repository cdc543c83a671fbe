"""``KubernetesJobRunner``: one Job per attempt; a watch reports Jobs when they end.

The only module that imports ``kubernetes`` (the official, synchronous client: calls run in
worker threads, the watch in a daemon thread of its own). Objects are handled as plain
dicts (``_preload_content=False``), which is what verdict.py reads.

Reporting across replicas: a finished, unreported Job is *claimed* with an annotation patch
that carries the Job's resourceVersion, so when several executors see it only one patch
succeeds (the others get 409) and only that one publishes; it then marks the Job reported.
A claim older than ``claim_ttl_s`` (its holder died) may be taken over.

Holding: the Job and its ConfigMap are created with the ``llmexec/report`` finalizer, which
``mark_reported`` removes (ConfigMap first, then the Job, in the same patch that marks it
reported). So ``ttlSecondsAfterFinished`` (or anyone) may start deleting a Job, but it stays
readable, with its command, until an executor has published its result — however long all
executors were down. The pod is not held: after the TTL its log (the result record) is gone,
and the Job reports ``result_lost``.

Objects are rendered for the server's version (``GET /version``, read once) and sent with
``fieldValidation=Strict``, so a field the server does not know is refused, not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import urllib3
from kubernetes import client, config, watch
from kubernetes.client import ApiException

from executor_worker import observe
from executor_worker.heavy.contract import failed
from executor_worker.heavy.render import (
    ATTEMPT_LABEL,
    COMMAND_KEY,
    FINALIZER,
    JOB_LABEL,
    MIN_MINOR,
    REQUEST_ANNOTATION,
    SELECTOR,
    load_template,
    render_configmap,
    render_job,
)
from executor_worker.heavy.runner import JobCompletion
from executor_worker.heavy.verdict import CONTAINER, finished, job_outcome, stuck_reason
from executor_worker.sandbox.api import SandboxJob, SandboxOutcome
from executor_worker.settings import ExecutorSettings
from pipeline.errors import ConfigError, PermanentError, TransientError
from schemas import ExecutionCommand

log = structlog.get_logger(__name__)

CLAIMED_BY, CLAIMED_AT, REPORTED = "llmexec/claimed-by", "llmexec/claimed-at", "llmexec/reported"
MERGE_PATCH = "application/merge-patch+json"
STRICT = "Strict"  # fieldValidation: unknown or duplicate fields are an error, not dropped
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_END = object()
_LISTED = "LISTED"  # after a list: the names it held (a Job kind of our own)
#: First pause before the watch lists again after a failure; doubles per failure in a row.
_WATCH_RETRY_S = 0.05


class KubernetesJobRunner:
    def __init__(self, settings: ExecutorSettings, api: client.ApiClient, *,
                 owner_id: str | None = None, claim_ttl_s: float = 120.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._s = settings
        self._ns = settings.heavy_job_namespace or "default"
        self._batch = client.BatchV1Api(api)
        self._core = client.CoreV1Api(api)
        self._owner = owner_id or f"{os.uname().nodename}-{uuid.uuid4().hex[:8]}"
        self._claim_ttl = claim_ttl_s
        self._clock = clock
        self._template = (load_template(Path(settings.heavy_job_template))
                          if settings.heavy_job_template else load_template())
        self._closed = threading.Event()
        self._queue: asyncio.Queue[Any] | None = None
        self._mine: set[str] = set()  # Jobs this replica claimed and is reporting
        self._counted: set[str] = set()  # Jobs this watch put in llmexec_heavy_jobs
        self._listed_ok = False
        self._api = api
        self._minor: int | None = None  # the API server's 1.x, read on first use

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> KubernetesJobRunner:
        """In-cluster credentials in a pod, else the kubeconfig (a developer's cluster)."""
        cfg = client.Configuration()
        namespace = settings.heavy_job_namespace
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                if not namespace:  # the Role grants Jobs in our own namespace only
                    namespace = Path(SA_NAMESPACE).read_text(encoding="utf-8").strip()
            else:
                config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise ConfigError(f"HEAVY_RUNNER=kubernetes: no Kubernetes credentials (neither "
                              f"in-cluster nor a kubeconfig): {exc}") from None
        update = {"heavy_job_namespace": namespace or "default"}
        return cls(settings.model_copy(update=update), client.ApiClient(cfg))

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Fail at start, with one line, when the API or the Role does not let us work."""
        self._closed.clear()
        try:
            await asyncio.to_thread(self._batch.list_namespaced_job, self._ns, limit=1,
                                    label_selector=SELECTOR, _preload_content=False)
        except ApiException as exc:
            raise ConfigError(f"HEAVY_RUNNER=kubernetes: cannot list Jobs in namespace "
                              f"{self._ns!r}: {exc.status} {exc.reason} (check the executor's "
                              "Role, k8s/executor-service-rbac.yaml)") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ConfigError(f"HEAVY_RUNNER=kubernetes: Kubernetes API unreachable: {exc}"
                              ) from None
        await self._server_minor()

    async def _server_minor(self) -> int:
        """The server's minor version; ConfigError below the supported minimum."""
        if self._minor is None:
            info = _json(await asyncio.to_thread(
                client.VersionApi(self._api).get_code, _preload_content=False))
            minor = server_minor(info)
            if minor is None or minor < MIN_MINOR or str(info.get("major")) != "1":
                raise ConfigError(
                    f"HEAVY_RUNNER=kubernetes: the Kubernetes API server is "
                    f"{info.get('gitVersion') or info}; heavy Jobs need 1.{MIN_MINOR} or newer")
            self._minor = minor
        return self._minor

    def ready(self) -> bool:
        return not self._closed.is_set() and self._listed_ok

    def describe(self) -> dict[str, Any]:
        return {"runner": "kubernetes", "namespace": self._ns, "image": self._s.heavy_job_image,
                "watching": self._listed_ok, "owner": self._owner}

    async def close(self) -> None:
        self._closed.set()
        # What a stopped watch saw is nobody's view any more: out of the gauge.
        observe.HEAVY_JOBS.drop(self._counted)
        self._counted.clear()
        if self._queue is not None:
            self._queue.put_nowait(_END)

    # -- submit -------------------------------------------------------------------------

    async def submit(self, command: ExecutionCommand, job: SandboxJob) -> SandboxOutcome | None:
        try:
            minor = await self._server_minor()
        except ConfigError as exc:
            raise PermanentError(str(exc)) from None
        except ApiException as exc:
            raise _translate(exc, "reading the Kubernetes API version") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"Kubernetes API unreachable: {exc}") from exc
        try:
            manifest = render_job(command, job, self._s, self._template, minor=minor)
            render_configmap(command, job, self._s, None)  # size check before creating
        except ValueError as exc:
            return failed("code_too_large", str(exc))
        name = manifest["metadata"]["name"]
        try:
            created = await asyncio.to_thread(self._create_job, manifest)
            cm = render_configmap(command, job, self._s, created["metadata"]["uid"])
            await asyncio.to_thread(self._create, self._core.create_namespaced_config_map, cm)
        except ApiException as exc:
            raise _translate(exc, f"submitting heavy Job {name}") from exc
        except ValueError as exc:  # a client that checks bodies itself (pydantic, >= 35)
            raise PermanentError(f"submitting heavy Job {name}: refused by the Kubernetes "
                                 f"client: {str(exc)[:300]}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"Kubernetes API unreachable: {exc}") from exc
        log.info("heavy.job_submitted", job=name, namespace=self._ns)
        return None

    def _create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        try:
            return _json(self._batch.create_namespaced_job(
                self._ns, manifest, field_validation=STRICT,  # type: ignore[arg-type]
                _preload_content=False))
        except ApiException as exc:
            if exc.status != 409:
                raise
        # Already submitted (a redelivered command): the same Job, nothing runs twice.
        return _json(self._batch.read_namespaced_job(
            manifest["metadata"]["name"], self._ns, _preload_content=False))

    def _create(self, create: Callable[..., Any], body: dict[str, Any]) -> None:
        try:
            create(self._ns, body, field_validation=STRICT, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise

    # -- completions ----------------------------------------------------------------------

    async def completions(self) -> AsyncIterator[JobCompletion]:
        self._queue = queue = asyncio.Queue[Any]()
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._watch, args=(loop, queue), daemon=True,
                         name="heavy-job-watch").start()
        while not self._closed.is_set():
            item = await queue.get()
            if item is _END:
                return
            kind, job = item
            if kind == _LISTED:  # Jobs gone while the watch was down left no DELETED
                observe.HEAVY_JOBS.drop(self._counted - job)
                self._counted &= job
                continue
            try:
                completion = await self._examine(kind, job)
            except (ApiException, urllib3.exceptions.HTTPError) as exc:
                # Left unreported: the next resync tries again.
                log.warning("heavy.examine_failed", job=_name(job), error=str(exc)[:300])
                continue
            if completion is not None:
                yield completion

    def _watch(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        """List (a resync: every Job is looked at again), then watch until the server ends
        the watch after ``heavy_job_resync_s``; repeat. Runs in its own daemon thread."""
        def put(item: Any) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                return True
            except RuntimeError:  # the loop is gone
                return False

        resync = max(1, int(self._s.heavy_job_resync_s))
        failures = 0
        while not self._closed.is_set():
            try:
                listing = _json(self._batch.list_namespaced_job(
                    self._ns, label_selector=SELECTOR, _preload_content=False))
                self._listed_ok = True
                failures = 0
                items = listing.get("items") or []
                for job in items:
                    if not put(("RESYNC", job)):
                        return
                if not put((_LISTED, {_name(job) for job in items})):
                    return
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._batch.list_namespaced_job, self._ns, label_selector=SELECTOR,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=resync, _request_timeout=resync + 10)
                with contextlib.closing(stream):  # closes the response on every exit
                    for event in stream:
                        if self._closed.is_set() or not put((event["type"],
                                                             event["raw_object"])):
                            return
            except Exception as exc:  # any failure: back off, then list again
                self._listed_ok = False
                log.warning("heavy.watch_failed", error=str(exc)[:300], failures=failures + 1)
                # A dropped connection is listed again at once; a failing API is asked
                # less and less often, at most every 5 s (a fixed 5 s after any failure
                # left every completion unseen for that long: seen in CI).
                self._closed.wait(min(5.0, resync, _WATCH_RETRY_S * 2 ** min(failures, 10)))
                failures += 1

    async def _examine(self, kind: str, job: dict[str, Any]) -> JobCompletion | None:
        name, meta = _name(job), job.get("metadata") or {}
        if observe.HEAVY_JOBS.observe_job(kind, job):  # observability: llmexec_heavy_jobs
            self._counted.add(name)
        else:
            self._counted.discard(name)
        ann = meta.get("annotations") or {}
        if ann.get(REPORTED) == "true" or kind in ("BOOKMARK", "ERROR"):
            return None
        if kind == "DELETED":
            if name in self._mine:
                self._mine.discard(name)
                return None
            # Deleted before anyone reported it: answer the request anyway.
            gone = failed("job_deleted", "the heavy Job was deleted before it reported")
            return await self._completion(job, gone, delete=False)
        if name in self._mine:
            return None
        delete = False
        outcome: SandboxOutcome | None = None
        if finished(job):
            pass
        elif meta.get("deletionTimestamp"):  # deleted while running: held by our finalizer
            outcome = failed("job_deleted", "the heavy Job was deleted before it finished",
                             layers=("k8s-pod",))
        elif kind == "RESYNC" and self._age(meta) > self._s.heavy_job_pending_timeout_s:
            stuck = stuck_reason(await self._pod(name))
            if stuck is None:
                return None
            outcome, delete = failed(*stuck, layers=("k8s-pod",)), True
        else:
            return None
        if not await self._claim(job):
            return None
        if outcome is None:
            pod = await self._pod(name)
            log_text = await self._log(pod)
            if pod is None and meta.get("deletionTimestamp"):
                outcome = failed("result_lost", "the heavy Job ended, but its pod (and the "
                                 "result in its log) was deleted before an executor read it "
                                 "(the Job's TTL ran out while no executor was running)",
                                 layers=("k8s-pod",))
            else:
                outcome = job_outcome(job, pod, log_text, self._s.heavy_job_memory_limit)
        return await self._completion(job, outcome, delete=delete)

    async def _completion(self, job: dict[str, Any], outcome: SandboxOutcome, *,
                          delete: bool) -> JobCompletion:
        meta = job["metadata"]
        ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
        command = await self._command(meta["name"])
        self._mine.add(meta["name"])
        return JobCompletion(
            request_id=command.request_id if command else ann.get(REQUEST_ANNOTATION, ""),
            attempt=command.attempt if command else int(labels.get(ATTEMPT_LABEL, "1")),
            command=command, outcome=outcome, handle=(meta["name"], delete))

    async def _claim(self, job: dict[str, Any]) -> bool:
        meta = job["metadata"]
        ann = meta.get("annotations") or {}
        holder, at = ann.get(CLAIMED_BY), float(ann.get(CLAIMED_AT) or 0)
        if holder and holder != self._owner and self._clock() - at < self._claim_ttl:
            return False  # another replica is reporting it
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"], "annotations": {
            CLAIMED_BY: self._owner, CLAIMED_AT: f"{self._clock():.3f}"}}}
        try:
            await asyncio.to_thread(self._batch.patch_namespaced_job, meta["name"], self._ns,
                                    patch, field_validation=STRICT, _content_type=MERGE_PATCH,
                                    _preload_content=False)
        except ApiException as exc:
            if exc.status in (404, 409):  # changed or gone: someone else got there first
                return False
            raise
        return True

    async def mark_reported(self, completion: JobCompletion) -> None:
        """Release the ConfigMap, then mark the Job reported and release it (one patch);
        a stuck Job is deleted. On failure the Job stays held and is looked at again."""
        name, delete = completion.handle
        try:
            await asyncio.to_thread(self._release, self._core.read_namespaced_config_map,
                                    self._core.patch_namespaced_config_map, name, {})
            await asyncio.to_thread(self._release, self._batch.read_namespaced_job,
                                    self._batch.patch_namespaced_job, name, {REPORTED: "true"})
            if delete:  # a stuck Job: stop it holding a pod slot or retrying pulls
                await asyncio.to_thread(self._batch.delete_namespaced_job, name, self._ns,
                                        propagation_policy="Background",
                                        _preload_content=False)
        except (ApiException, urllib3.exceptions.HTTPError, TransientError) as exc:
            log.warning("heavy.mark_reported_failed", job=name, error=str(exc)[:300])
            self._mine.discard(name)  # the next resync claims it again

    def _release(self, read: Callable[..., Any], patch: Callable[..., Any], name: str,
                 annotations: dict[str, str], attempts: int = 5) -> None:
        """Remove our finalizer (and add ``annotations``) with a resourceVersion
        precondition, so a finalizer someone else adds meanwhile is never lost."""
        for _ in range(attempts):
            try:
                meta = _json(read(name, self._ns, _preload_content=False))["metadata"]
            except ApiException as exc:
                if exc.status == 404:
                    return  # already gone: nothing to hold
                raise
            finalizers = list(meta.get("finalizers") or [])
            have = (meta.get("annotations") or {}).items() >= annotations.items()
            if FINALIZER not in finalizers and have:
                return
            body: dict[str, Any] = {"metadata": {
                "resourceVersion": meta["resourceVersion"],
                "finalizers": [f for f in finalizers if f != FINALIZER]}}
            if annotations:
                body["metadata"]["annotations"] = annotations
            try:
                patch(name, self._ns, body, field_validation=STRICT,
                      _content_type=MERGE_PATCH, _preload_content=False)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    raise
        raise TransientError(f"releasing {name}: kept changing ({attempts} conflicts)")

    # -- reads --------------------------------------------------------------------------

    async def _command(self, name: str) -> ExecutionCommand | None:
        try:
            cm = _json(await asyncio.to_thread(self._core.read_namespaced_config_map, name,
                                               self._ns, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = (cm.get("data") or {}).get(COMMAND_KEY)
        return ExecutionCommand.model_validate_json(raw) if raw else None

    async def _pod(self, name: str) -> dict[str, Any] | None:
        pods = _json(await asyncio.to_thread(
            self._core.list_namespaced_pod, self._ns, label_selector=f"{JOB_LABEL}={name}",
            _preload_content=False)).get("items") or []
        # The newest pod is the one that decided the Job (earlier ones were retried).
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return pods[-1] if pods else None

    async def _log(self, pod: dict[str, Any] | None) -> str | None:
        if pod is None:
            return None
        try:
            resp: Any = await asyncio.to_thread(
                self._core.read_namespaced_pod_log, pod["metadata"]["name"], self._ns,
                container=CONTAINER, _preload_content=False)
        except ApiException as exc:
            if exc.status in (400, 404):  # never started, or gone
                return None
            raise
        return bytes(resp.data).decode(errors="replace")

    def _age(self, meta: dict[str, Any]) -> float:
        created = meta.get("creationTimestamp")
        if not created:
            return 0.0
        return self._clock() - datetime.fromisoformat(created).astimezone(UTC).timestamp()


def _json(resp: Any) -> dict[str, Any]:
    return dict(json.loads(resp.data))


def server_minor(info: dict[str, Any]) -> int | None:
    """1.x from a /version answer; managed clusters say e.g. ``"28+"`` or only gitVersion."""
    found = re.match(r"\d+", str(info.get("minor") or ""))
    if found is None:
        found = re.match(r"v?\d+\.(\d+)", str(info.get("gitVersion") or ""))
        return int(found.group(1)) if found else None
    return int(found.group(0))


def _name(job: dict[str, Any]) -> str:
    return str((job.get("metadata") or {}).get("name", "?"))


def _translate(exc: ApiException, doing: str) -> Exception:
    status = exc.status or 0
    message = f"{doing}: {status} {exc.reason}: {(exc.body or '')[:300]!s}"
    if status in (408, 429) or status >= 500:
        return TransientError(message)
    return PermanentError(message)
