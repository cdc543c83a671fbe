"""A local HTTP server speaking enough of the Kubernetes API for the official client.

batch/v1 jobs (create, get, list, watch, merge-patch with resourceVersion preconditions,
delete), v1 configmaps (create, get, delete), v1 pods (list by label, log). Creates of an
existing name answer 409; watches stream newline-delimited JSON events (chunked) from a
resourceVersion until ``timeoutSeconds``. Nothing runs: tests play the controllers with
:meth:`FakeKubeApi.add_pod` and :meth:`FakeKubeApi.finish_job`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_PATH = re.compile(
    r"^/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>jobs|configmaps|pods)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log|status))?$"
)
KINDS = {"jobs": "Job", "configmaps": "ConfigMap", "pods": "Pod"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeKubeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.events: list[tuple[int, str, str, str, dict[str, Any]]] = []  # rv,type,res,ns,obj
        self.requests: list[tuple[str, str]] = []
        self.rv = 100
        self.cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKubeApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.cond:
            self.cond.notify_all()

    # -- store ------------------------------------------------------------------------

    def _record(self, kind: str, res: str, ns: str, obj: dict[str, Any]) -> None:
        self.events.append((self.rv, kind, res, ns, copy.deepcopy(obj)))
        self.cond.notify_all()

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def create(self, res: str, ns: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.cond:
            name = body["metadata"]["name"]
            if (res, ns, name) in self.objects:
                return 409, status(409, "AlreadyExists", f'{res} "{name}" already exists')
            obj = copy.deepcopy(body)
            obj.setdefault("apiVersion", "batch/v1" if res == "jobs" else "v1")
            obj["kind"] = KINDS[res]
            meta = obj["metadata"]
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now())
            if res == "jobs":
                obj.setdefault("status", {})
            self._bump(obj)
            self.objects[(res, ns, name)] = obj
            self._record("ADDED", res, ns, obj)
            return 201, copy.deepcopy(obj)

    def patch(self, res: str, ns: str, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self.cond:
            obj = self.objects.get((res, ns, name))
            if obj is None:
                return 404, status(404, "NotFound", f'{res} "{name}" not found')
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want is not None and want != obj["metadata"]["resourceVersion"]:
                return 409, status(409, "Conflict", "the object has been modified")
            merge(obj, body)
            self._bump(obj)
            self._record("MODIFIED", res, ns, obj)
            return 200, copy.deepcopy(obj)

    def delete(self, res: str, ns: str, name: str) -> tuple[int, Any]:
        with self.cond:
            obj = self.objects.pop((res, ns, name), None)
            if obj is None:
                return 404, status(404, "NotFound", f'{res} "{name}" not found')
            self._bump(obj)
            self._record("DELETED", res, ns, obj)
            # The garbage collector: owned objects go with their owner.
            uid = obj["metadata"]["uid"]
            for key, other in list(self.objects.items()):
                refs = other["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    del self.objects[key]
            return 200, status(200, "Success", "deleted")

    def get(self, res: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get((res, ns, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, res: str, ns: str, selector: str = "") -> dict[str, Any]:
        with self.cond:
            items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                     if r == res and n == ns and matches(o, selector)]
            return {"kind": f"{KINDS[res]}List", "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    # -- the controllers, played by tests ---------------------------------------------

    def add_pod(self, job_name: str, ns: str = "default", *, phase: str = "Running",
                container_state: dict[str, Any] | None = None, log: str = "",
                conditions: list[dict[str, Any]] | None = None) -> str:
        job = self.get("jobs", ns, job_name)
        assert job is not None, job_name
        labels = dict(job["spec"]["template"]["metadata"]["labels"])
        labels["job-name"] = job_name
        name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        pod = {"metadata": {"name": name, "labels": labels}, "spec": {},
               "status": {"phase": phase, "conditions": conditions or [],
                          "containerStatuses": [{"name": "heavy-executor",
                                                 "state": container_state or {}}]}}
        self.create("pods", ns, pod)
        self.logs[(ns, name)] = log
        return name

    def finish_job(self, job_name: str, ns: str = "default", *, succeeded: bool = True,
                   reason: str = "", log: str | None = None,
                   container_state: dict[str, Any] | None = None) -> None:
        """End a Job the way the Job controller would; with ``log``, its pod first."""
        if log is not None or container_state is not None:
            self.add_pod(job_name, ns, phase="Succeeded" if succeeded else "Failed",
                         log=log or "", container_state=container_state or {
                             "terminated": {"exitCode": 0 if succeeded else 1}})
        kind = "Complete" if succeeded else "Failed"
        cond = {"type": kind, "status": "True", "reason": reason, "lastTransitionTime": now()}
        self.patch("jobs", ns, job_name, {"status": {
            "conditions": [cond], ("succeeded" if succeeded else "failed"): 1}})

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and fragment in p)

    # -- HTTP -------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self) -> tuple[re.Match[str] | None, dict[str, str]]:
                url = urlparse(self.path)
                api.requests.append((self.command, url.path))
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                return _PATH.match(url.path), query

            def do_POST(self) -> None:
                m, _ = self._route()
                if not m or m["name"]:
                    return self._send(404, status(404, "NotFound", self.path))
                self._send(*api.create(m["res"], m["ns"], self._body()))

            def do_PATCH(self) -> None:
                m, _ = self._route()
                if not m or not m["name"]:
                    return self._send(404, status(404, "NotFound", self.path))
                self._send(*api.patch(m["res"], m["ns"], m["name"], self._body()))

            def do_DELETE(self) -> None:
                m, _ = self._route()
                if not m or not m["name"]:
                    return self._send(404, status(404, "NotFound", self.path))
                self._send(*api.delete(m["res"], m["ns"], m["name"]))

            def do_GET(self) -> None:
                m, query = self._route()
                if not m:
                    return self._send(404, status(404, "NotFound", self.path))
                res, ns, name = m["res"], m["ns"], m["name"]
                if name and m["sub"] == "log":
                    text = api.logs.get((ns, name))
                    if text is None:
                        return self._send(404, status(404, "NotFound", "no such pod"))
                    return self._send(200, text, "text/plain")
                if name:
                    obj = api.get(res, ns, name)
                    if obj is None:
                        return self._send(404, status(404, "NotFound", f"{res} {name}"))
                    return self._send(200, obj)
                selector = query.get("labelSelector", "")
                if query.get("watch") in ("true", "1", "True"):
                    return self._watch(res, ns, selector, int(query.get("resourceVersion") or 0),
                                       float(query.get("timeoutSeconds") or 30))
                self._send(200, api.list(res, ns, selector))

            def _watch(self, res: str, ns: str, selector: str, since: int,
                       timeout: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                end = time.monotonic() + timeout
                seen = since
                try:
                    while True:
                        with api.cond:
                            batch = [e for e in api.events if e[0] > seen and e[2] == res
                                     and e[3] == ns and matches(e[4], selector)]
                            seen = max([seen, *(e[0] for e in api.events)])
                            if not batch:
                                left = end - time.monotonic()
                                if left <= 0 or not api.thread.is_alive():
                                    break
                                api.cond.wait(min(left, 0.2))
                                continue
                        for _, kind, _, _, obj in batch:
                            line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        return Handler


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 400
            else "Success", "reason": reason, "message": message, "code": code}


@contextmanager
def running() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi().start()
    try:
        yield api
    finally:
        api.stop()
