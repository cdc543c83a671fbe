"""A local HTTP server speaking enough of the Kubernetes API for the official client.

batch/v1 jobs (create, get, list, watch, merge-patch with resourceVersion preconditions,
delete), v1 configmaps (create, get, patch, delete), v1 pods (list by label, log), and
``/version``. It refuses what a real API server of the configured version refuses:

- **schemas**: every object created or patched over HTTP is checked against the official
  strict schema of that minor (tests/fakes/kube_schema.py); unknown fields or wrong types
  answer 400 ``BadRequest`` ("strict decoding error", as a server does with
  ``fieldValidation=Strict`` — the fake refuses them even without it, where a real server
  would drop them silently), any other violation 422 ``Invalid`` with ``details.causes``;
- **RBAC**: each request is checked against the executor's Role (k8s/executor-service-rbac.yaml
  by default) and answers 403 ``Forbidden`` when the Role does not grant it; ``used`` holds
  what was asked for, so a test can compare it with the Role;
- **finalizers**: deleting an object that has finalizers sets ``deletionTimestamp`` and keeps
  it until the last finalizer is patched away (no new finalizer may be added meanwhile);
  ``propagationPolicy=Foreground`` adds ``foregroundDeletion`` and deletes dependents first;
  the garbage collector deletes objects whose owner is gone.

Nothing runs: tests play the controllers with :meth:`FakeKubeApi.add_pod`,
:meth:`FakeKubeApi.finish_job` and :meth:`FakeKubeApi.run_ttl_controller`.
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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from tests.fakes import kube_schema

_PATH = re.compile(
    r"^/(?P<api>api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>jobs|configmaps|pods)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log|status))?$"
)
KINDS = {"jobs": "Job", "configmaps": "ConfigMap", "pods": "Pod"}
GROUPS = {"jobs": "batch", "configmaps": "", "pods": ""}
API_VERSIONS = {"jobs": "batch/v1", "configmaps": "v1", "pods": "v1"}
RBAC_FILE = Path(__file__).resolve().parents[2] / "k8s" / "executor-service-rbac.yaml"
SUBJECT = "system:serviceaccount:default:executor-service"
FOREGROUND = "foregroundDeletion"
MERGE_PATCH = "application/merge-patch+json"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


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


def role_rules(path: Path = RBAC_FILE, name: str = "executor-service-role") -> list[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc and doc.get("kind") == "Role" and doc["metadata"]["name"] == name:
            return list(doc["rules"])
    raise LookupError(f"no Role {name} in {path}")


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
               and (verb in r.get("verbs", []) or "*" in r.get("verbs", [])) for r in rules)


class FakeKubeApi:
    def __init__(self, version: str = "1.33", *,
                 rules: list[dict[str, Any]] | None = None) -> None:
        major, minor = version.split(".")[:2]
        self.major, self.minor = major, int(minor)
        self.rules = role_rules() if rules is None else rules
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.events: list[tuple[int, str, str, str, dict[str, Any]]] = []  # rv,type,res,ns,obj
        self.requests: list[tuple[str, str]] = []
        #: (api group, resource[/subresource], verb) of every resource request received.
        self.used: set[tuple[str, str, str]] = set()
        #: The fieldValidation query parameter of every create and patch.
        self.field_validation: list[str | None] = []
        #: Every refusal sent (code, Status body), newest last.
        self.refused: list[tuple[int, dict[str, Any]]] = []
        #: The next this many collection lists (not watches) are refused as an overloaded
        #: API server refuses them: 503 with a ServiceUnavailable Status.
        self.list_failures = 0
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

    def version_info(self) -> dict[str, str]:
        return {"major": self.major, "minor": str(self.minor),
                "gitVersion": f"v{self.major}.{self.minor}.0", "platform": "linux/amd64"}

    # -- admission --------------------------------------------------------------------

    def invalid(self, obj: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The answer of a real server to ``obj``, if it would refuse it."""
        kind, name = obj.get("kind", ""), (obj.get("metadata") or {}).get("name", "")
        causes = kube_schema.problems(obj, self.minor)
        decoding = [c for c in causes if c.decoding]
        if decoding:
            return 400, status(400, "BadRequest", f'{kind} in version "v1" cannot be handled '
                               f"as a {kind}: strict decoding error: "
                               + ", ".join(c.message for c in decoding))
        if causes:
            group = API_VERSIONS.get(kind.lower() + "s", "v1").rpartition("/")[0]
            body = status(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" '
                          f"is invalid: {kube_schema.describe(causes)}")
            body["details"] = {"name": name, "group": group, "kind": kind, "causes": [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in causes]}
            return 422, body
        return None

    # -- store ------------------------------------------------------------------------

    def _record(self, kind: str, res: str, ns: str, obj: dict[str, Any]) -> None:
        self.events.append((self.rv, kind, res, ns, copy.deepcopy(obj)))
        self.cond.notify_all()

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def create(self, res: str, ns: str, body: dict[str, Any], *,
               validate: bool = False) -> tuple[int, dict[str, Any]]:
        with self.cond:
            name = (body.get("metadata") or {}).get("name", "")
            if (res, ns, name) in self.objects:
                return 409, status(409, "AlreadyExists", f'{res} "{name}" already exists')
            obj = copy.deepcopy(body)
            obj.setdefault("apiVersion", API_VERSIONS[res])
            obj.setdefault("kind", KINDS[res])
            meta = obj["metadata"]
            meta.pop("deletionTimestamp", None)  # a server ignores it on create
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now())
            if res == "jobs":
                obj.setdefault("status", {})
            if validate and (refusal := self.invalid(obj)):
                return refusal
            self._bump(obj)
            self.objects[(res, ns, name)] = obj
            self._record("ADDED", res, ns, obj)
            return 201, copy.deepcopy(obj)

    def patch(self, res: str, ns: str, name: str, body: dict[str, Any], *,
              validate: bool = False) -> tuple[int, Any]:
        with self.cond:
            obj = self.objects.get((res, ns, name))
            if obj is None:
                return 404, status(404, "NotFound", f'{res} "{name}" not found')
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want is not None and want != obj["metadata"]["resourceVersion"]:
                return 409, status(409, "Conflict", "the object has been modified; please "
                                   "apply your changes to the latest version and try again")
            new = copy.deepcopy(obj)
            merge(new, body)
            before = set(obj["metadata"].get("finalizers") or [])
            added = set(new["metadata"].get("finalizers") or []) - before
            if obj["metadata"].get("deletionTimestamp") and added:
                message = "no new finalizers can be added if the object is being deleted"
                body = status(422, "Invalid", f'{obj["kind"]} "{name}" is invalid: '
                              f"metadata.finalizers: Forbidden: {message}")
                body["details"] = {"name": name, "kind": obj["kind"], "causes": [{
                    "reason": "FieldValueForbidden", "message": f"Forbidden: {message}",
                    "field": "metadata.finalizers"}]}
                return 422, body
            for key in ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "name"):
                if key in obj["metadata"]:
                    new["metadata"][key] = obj["metadata"][key]
            if validate and (refusal := self.invalid(new)):
                return refusal
            self.objects[(res, ns, name)] = new
            self._bump(new)
            self._record("MODIFIED", res, ns, new)
            self._finish_deletion(res, ns, name)
            self._collect_garbage()
            return 200, copy.deepcopy(new)

    def delete(self, res: str, ns: str, name: str,
               propagation: str = "Background") -> tuple[int, Any]:
        with self.cond:
            obj = self.objects.get((res, ns, name))
            if obj is None:
                return 404, status(404, "NotFound", f'{res} "{name}" not found')
            meta = obj["metadata"]
            if meta.get("finalizers") or propagation == "Foreground":
                if propagation == "Foreground" and FOREGROUND not in meta.get("finalizers", []):
                    meta["finalizers"] = [*(meta.get("finalizers") or []), FOREGROUND]
                meta.setdefault("deletionTimestamp", now())
                meta.setdefault("deletionGracePeriodSeconds", 0)
                self._bump(obj)
                self._record("MODIFIED", res, ns, obj)
                self._collect_garbage()
                return 200, copy.deepcopy(obj)
            self._remove(res, ns, name)
            self._collect_garbage()
            return 200, status(200, "Success", "deleted")

    def _remove(self, res: str, ns: str, name: str) -> None:
        obj = self.objects.pop((res, ns, name))
        self._bump(obj)
        self._record("DELETED", res, ns, obj)
        if res == "pods":
            self.logs.pop((ns, name), None)

    def _finish_deletion(self, res: str, ns: str, name: str) -> None:
        obj = self.objects.get((res, ns, name))
        if obj and obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get(
                "finalizers"):
            self._remove(res, ns, name)

    def _collect_garbage(self) -> None:
        """The garbage collector, run to a fixpoint after every change: dependents of a
        missing owner are deleted; an owner in foreground deletion has its dependents
        deleted and loses ``foregroundDeletion`` once none that blocks it is left."""
        changed = True
        while changed:
            changed = False
            uids = {o["metadata"]["uid"]: k for k, o in self.objects.items()}
            for key, obj in list(self.objects.items()):
                if key not in self.objects:
                    continue
                meta = obj["metadata"]
                refs = meta.get("ownerReferences") or []
                owners = [uids.get(r["uid"]) for r in refs]
                if refs and all(o is None for o in owners) and not meta.get("deletionTimestamp"):
                    self.delete(*key)
                    changed = True
                    continue
                if FOREGROUND in (meta.get("finalizers") or []):
                    uid = meta["uid"]
                    deps = [(k, o) for k, o in self.objects.items()
                            if any(r["uid"] == uid for r in o["metadata"].get(
                                "ownerReferences") or [])]
                    for k, o in deps:
                        if not o["metadata"].get("deletionTimestamp"):
                            self.delete(*k)
                            changed = True
                    blocking = [o for k, o in self.objects.items() if any(
                        r["uid"] == uid and r.get("blockOwnerDeletion")
                        for r in o["metadata"].get("ownerReferences") or [])]
                    if not blocking and key in self.objects:
                        meta["finalizers"] = [f for f in meta["finalizers"] if f != FOREGROUND]
                        self._bump(obj)
                        self._record("MODIFIED", *key[:2], obj)
                        self._finish_deletion(*key)
                        changed = True

    def get(self, res: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get((res, ns, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, res: str, ns: str, selector: str = "") -> dict[str, Any]:
        with self.cond:
            items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                     if r == res and n == ns and matches(o, selector)]
            return {"kind": f"{KINDS[res]}List", "apiVersion": API_VERSIONS[res],
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    # -- the controllers, played by tests ---------------------------------------------

    def add_pod(self, job_name: str, ns: str = "default", *, phase: str = "Running",
                container_state: dict[str, Any] | None = None, log: str = "",
                conditions: list[dict[str, Any]] | None = None) -> str:
        """A pod of the Job, as the Job controller makes it: the template's labels, and an
        owner reference that has the garbage collector delete it with the Job."""
        job = self.get("jobs", ns, job_name)
        assert job is not None, job_name
        labels = dict(job["spec"]["template"]["metadata"]["labels"])
        labels["job-name"] = job_name
        name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                 "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        pod = {"metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
               "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
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

    def run_ttl_controller(self, at: float | None = None, ns: str = "default") -> list[str]:
        """The TTL-after-finished controller at time ``at``: a finished Job whose
        ``ttlSecondsAfterFinished`` has passed is deleted with foreground propagation."""
        at = time.time() if at is None else at
        expired: list[str] = []
        for job in self.list("jobs", ns)["items"]:
            ttl = job["spec"].get("ttlSecondsAfterFinished")
            ends = [c["lastTransitionTime"] for c in job["status"].get("conditions") or []
                    if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
            if ttl is None or not ends or job["metadata"].get("deletionTimestamp"):
                continue
            if parse_time(ends[0]) + ttl <= at:
                self.delete("jobs", ns, job["metadata"]["name"], propagation="Foreground")
                expired.append(job["metadata"]["name"])
        return expired

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
                if code >= 400 and isinstance(body, dict):
                    api.refused.append((code, body))
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self, verb: str) -> tuple[re.Match[str] | None, dict[str, str], bool]:
                """The match, the query, and whether the Role allows the request (a 403 is
                sent when it does not)."""
                url = urlparse(self.path)
                api.requests.append((self.command, url.path))
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                m = _PATH.match(url.path)
                if m is None:
                    return None, query, True
                res = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
                if verb == "get" and not m["name"]:
                    verb = "watch" if query.get("watch") in ("true", "1", "True") else "list"
                group = GROUPS[m["res"]]
                api.used.add((group, res, verb))
                if not allowed(api.rules, group, res, verb):
                    kind = m["res"] + (f".{group}" if group else "")
                    what = f'{kind} "{m["name"]}"' if m["name"] else kind
                    self._send(403, status(403, "Forbidden", f"{what} is forbidden: User "
                                           f'"{SUBJECT}" cannot {verb} resource "{res}" in API '
                                           f'group "{group}" in the namespace "{m["ns"]}"'))
                    return m, query, False
                return m, query, True

            def do_POST(self) -> None:
                m, query, ok = self._route("create")
                if not ok:
                    return
                if not m or m["name"]:
                    return self._send(404, status(404, "NotFound", self.path))
                api.field_validation.append(query.get("fieldValidation"))
                self._send(*api.create(m["res"], m["ns"], self._body(), validate=True))

            def do_PATCH(self) -> None:
                m, query, ok = self._route("patch")
                if not ok:
                    return
                if not m or not m["name"]:
                    return self._send(404, status(404, "NotFound", self.path))
                if self.headers.get("Content-Type", "").split(";")[0] != MERGE_PATCH:
                    return self._send(415, status(415, "UnsupportedMediaType",
                                                  "the fake speaks merge patches only"))
                api.field_validation.append(query.get("fieldValidation"))
                self._send(*api.patch(m["res"], m["ns"], m["name"], self._body(),
                                      validate=True))

            def do_DELETE(self) -> None:
                m, query, ok = self._route("delete")
                if not ok:
                    return
                if not m or not m["name"]:
                    return self._send(404, status(404, "NotFound", self.path))
                body = self._body()
                policy = query.get("propagationPolicy") or body.get("propagationPolicy")
                self._send(*api.delete(m["res"], m["ns"], m["name"],
                                       policy or "Background"))

            def do_GET(self) -> None:
                if urlparse(self.path).path.rstrip("/") == "/version":
                    api.requests.append(("GET", "/version"))
                    return self._send(200, api.version_info())
                m, query, ok = self._route("get")
                if not ok:
                    return
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
                with api.cond:
                    refuse, api.list_failures = api.list_failures > 0, max(0, api.list_failures - 1)
                if refuse:
                    return self._send(503, status(503, "ServiceUnavailable",
                                                  "the server is currently unable to handle "
                                                  "the request"))
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
    return {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure" if code >= 400 else "Success", "reason": reason,
            "message": message, "code": code}


@contextmanager
def running(version: str = "1.33") -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(version).start()
    try:
        yield api
    finally:
        api.stop()
