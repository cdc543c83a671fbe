"""The runner against a fake API server that refuses what a real one of each minor refuses:
official schemas, the Role, finalizers and the TTL controller. Real ``kubernetes`` client."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from executor_worker.heavy.contract import encode_record
from executor_worker.heavy.kube import REPORTED, KubernetesJobRunner, server_minor
from executor_worker.heavy.render import FINALIZER, load_template
from executor_worker.results import sandbox_job
from pipeline.errors import ConfigError, PermanentError
from schemas import ResultStatus
from tests.fakes import kube_schema
from tests.fakes.kube_api import FakeKubeApi, role_rules
from tests.heavy.conftest import RunnerFactory, command, heavy_settings
from tests.heavy.test_heavy_reconciler import OK, Reporting, submit, until

MINORS = [25, 26, 28, 29, 31, 34, 35, 37]


@pytest.fixture
def versioned() -> Iterator[Any]:
    made: list[FakeKubeApi] = []

    def make(version: str, **kw: Any) -> FakeKubeApi:
        made.append(FakeKubeApi(version, **kw).start())
        return made[-1]

    yield make
    for api in made:
        api.stop()


def raw_api(kube: FakeKubeApi) -> client.ApiClient:
    return client.ApiClient(client.Configuration(host=kube.url))


def test_the_supported_range_is_shipped() -> None:
    supported = kube_schema.SUPPORTED_MINORS
    assert supported == list(range(25, 38))


@pytest.mark.parametrize("minor", MINORS)
async def test_a_job_runs_and_reports_on_each_minor(versioned: Any, minor: int) -> None:
    kube = versioned(f"1.{minor}")
    runners = RunnerFactory(kube)
    rep = Reporting(runners())
    await rep.runner.start()
    name = await submit(rep.runner, command(metadata={"team": "x"}))
    job = kube.get("jobs", "default", name)
    assert job is not None and kube_schema.problems(job, minor) == []
    assert ("podFailurePolicy" in job["spec"]) is (minor >= 26)
    kube.finish_job(name, log=encode_record(OK) + "\n")
    ((_, result),) = await rep.wait()
    assert result.status is ResultStatus.SUCCEEDED and result.metadata == {"team": "x"}
    await until(lambda: (kube.get("jobs", "default", name) or {})["metadata"].get(
        "finalizers") == [])
    assert kube.refused == [] and set(kube.field_validation) == {"Strict"}
    await rep.stop()
    for _, api in runners.made:
        api.close()


def test_the_fake_refuses_the_old_template_like_a_server_of_its_minor(versioned: Any) -> None:
    old = old_template()
    old["metadata"]["name"] = "old"
    for minor, refused in ((30, True), (34, True), (35, False)):
        api = raw_api(versioned(f"1.{minor}"))
        batch = client.BatchV1Api(api)
        if not refused:
            batch.create_namespaced_job("default", old, _preload_content=False)
            continue
        with pytest.raises(ApiException) as caught:
            batch.create_namespaced_job("default", old, _preload_content=False)
        assert caught.value.status == 422
        body = json.loads(caught.value.body)
        assert (body["status"], body["reason"], body["details"]["kind"]) == (
            "Failure", "Invalid", "Job")
        assert {"reason": "FieldValueRequired", "message": "Required value",
                "field": "spec.podFailurePolicy.rules[0].onPodConditions[0].status"
                } in body["details"]["causes"]
        api.close()


def post(kube: FakeKubeApi, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Raw HTTP (the official client already refuses unknown fields before sending)."""
    request = urllib.request.Request(kube.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_unknown_fields_and_wrong_types_are_a_400_strict_decoding_error(versioned: Any) -> None:
    kube = versioned("1.33")
    path = "/api/v1/namespaces/default/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
          "data": {"a": "b"}, "datta": {}}
    code, body = post(kube, path, cm)
    assert (code, body["reason"]) == (400, "BadRequest")
    assert 'strict decoding error: unknown field "datta"' in body["message"]
    cm.pop("datta")
    code, body = post(kube, path, {**cm, "data": {"a": 1}})
    assert code == 400 and "data.a" in body["message"]
    assert post(kube, path, cm)[0] == 201


def old_template() -> dict[str, Any]:
    """The template as it was before issue 11: valid on 1.35+ only."""
    old = copy.deepcopy(load_template())
    old["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0].pop("status")
    old["spec"]["podFailurePolicy"]["rules"][1].pop("onPodConditions")
    return old


@pytest.mark.parametrize(("minor", "change", "error"), [
    (30, old_template, "422"),  # the server refuses it
    (35, lambda: {**load_template(), "spec": {**load_template()["spec"], "backoffLimitt": 2}},
     "backoffLimitt"),  # the client or the server refuses it
])
async def test_a_custom_template_that_is_refused_fails_the_submit_permanently(
        versioned: Any, tmp_path: Any, minor: int, change: Any, error: str) -> None:
    kube = versioned(f"1.{minor}")
    bad = tmp_path / "job.yaml"
    bad.write_text(yaml.safe_dump(change()))
    runner = KubernetesJobRunner(heavy_settings(heavy_job_template=str(bad)), raw_api(kube))
    with pytest.raises(PermanentError, match=error):
        await runner.submit(command(), sandbox_job(command(), heavy_settings()))
    assert kube.list("jobs", "default")["items"] == []


async def test_a_server_below_the_minimum_is_refused_at_start(versioned: Any) -> None:
    runner = KubernetesJobRunner(heavy_settings(), raw_api(versioned("1.24")))
    with pytest.raises(ConfigError, match=r"v1\.24\.0; heavy Jobs need 1\.25 or newer"):
        await runner.start()
    with pytest.raises(PermanentError, match=r"1\.25"):
        await runner.submit(command(), sandbox_job(command(), heavy_settings()))


def test_server_minor_reads_managed_cluster_versions() -> None:
    assert server_minor({"major": "1", "minor": "28+", "gitVersion": "v1.28.3-eks-1"}) == 28
    assert server_minor({"major": "1", "minor": "", "gitVersion": "v1.30.2-gke.1"}) == 30
    assert server_minor({"major": "1", "minor": ""}) is None


# -- RBAC ---------------------------------------------------------------------------------


def granted() -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role_rules() for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]}


async def test_the_role_grants_exactly_what_the_runner_uses(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners(heavy_job_pending_timeout_s=0.01))
    await rep.runner.start()
    done = await submit(rep.runner, command("done"))
    kube.finish_job(done, log=encode_record(OK) + "\n")
    stuck = await submit(rep.runner, command("stuck"))  # reported, then deleted
    kube.add_pod(stuck, phase="Pending", container_state={
        "waiting": {"reason": "ErrImagePull", "message": "nope"}})
    await rep.wait(2, timeout=8)
    await until(lambda: kube.get("jobs", "default", stuck) is None)
    await rep.stop()
    assert kube.used == granted()  # every grant used, nothing used that is not granted
    assert not [r for r in kube.refused if r[0] == 403]


def test_the_fake_answers_403_for_what_the_role_does_not_grant(versioned: Any) -> None:
    rules = [r for r in role_rules() if r["resources"] != ["configmaps"]]
    api = raw_api(versioned("1.33", rules=rules))
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(api).read_namespaced_config_map("x", "default", _preload_content=False)
    assert caught.value.status == 403 and "cannot get resource" in caught.value.body
    api.close()


# -- finalizers, garbage collection, TTL ---------------------------------------------------


def job_meta(kube: FakeKubeApi, name: str) -> dict[str, Any]:
    job = kube.get("jobs", "default", name)
    assert job is not None, name
    return dict(job["metadata"])


async def test_a_job_that_ends_while_every_executor_is_down_past_its_ttl_still_reports(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    first = runners("before-outage")
    name = await submit(first, command(metadata={"team": "x"}))
    await first.close()  # every executor is down
    kube.finish_job(name, log=encode_record(OK) + "\n")
    # Hours later the TTL controller deletes the Job (foreground): the pod goes, the Job and
    # its ConfigMap stay, held by our finalizer.
    assert kube.run_ttl_controller(at=time.time() + 3 * 3600) == [name]
    assert job_meta(kube, name)["deletionTimestamp"]
    assert kube.list("pods", "default")["items"] == []
    cm = kube.get("configmaps", "default", name)
    assert cm is not None and cm["metadata"]["deletionTimestamp"]
    rep = Reporting(runners("after-outage"))
    ((hub, result),) = await rep.wait()
    assert hub == "results" and result.request_id == "req-1"
    assert result.status is ResultStatus.FAILED and result.error.code == "result_lost"
    assert result.metadata == {"team": "x"}  # the command was still there
    await until(lambda: kube.get("jobs", "default", name) is None)
    assert kube.get("configmaps", "default", name) is None
    await rep.stop()


async def test_a_reported_job_is_released_and_the_ttl_cleans_everything_up(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners())
    name = await submit(rep.runner, command())
    kube.finish_job(name, log=encode_record(OK) + "\n")
    await rep.wait()
    await until(lambda: job_meta(kube, name).get("finalizers") == [])
    assert job_meta(kube, name)["annotations"][REPORTED] == "true"
    assert (kube.get("configmaps", "default", name) or {})["metadata"]["finalizers"] == []
    assert kube.run_ttl_controller(at=time.time() + 10) == []  # not yet
    assert kube.run_ttl_controller(at=time.time() + 3601) == [name]
    assert kube.get("jobs", "default", name) is None
    assert kube.get("configmaps", "default", name) is None
    assert kube.list("pods", "default")["items"] == []
    await rep.stop()


async def test_a_job_deleted_while_running_is_held_reported_then_released(
        kube: FakeKubeApi, runners: RunnerFactory) -> None:
    rep = Reporting(runners())
    name = await submit(rep.runner, command())
    kube.add_pod(name)
    kube.delete("jobs", "default", name)  # e.g. kubectl delete job
    assert job_meta(kube, name)["deletionTimestamp"]
    ((_, result),) = await rep.wait()
    assert result.error.code == "job_deleted"
    await until(lambda: kube.get("jobs", "default", name) is None)
    assert kube.get("configmaps", "default", name) is None
    assert kube.list("pods", "default")["items"] == []  # collected with their owner
    await rep.stop()


ADMIN = [{"apiGroups": ["", "batch"], "resources": ["jobs", "configmaps", "pods"],
          "verbs": ["*"]}]


def test_fake_finalizer_semantics_match_an_api_server(versioned: Any) -> None:
    kube = versioned("1.33", rules=ADMIN)
    core = client.CoreV1Api(api := raw_api(kube))
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "held", "finalizers": ["a.io/x", "b.io/y"]}}
    core.create_namespaced_config_map("default", cm, _preload_content=False)
    core.delete_namespaced_config_map("held", "default", _preload_content=False)
    held = kube.get("configmaps", "default", "held")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as caught:  # no new finalizer while deleting
        core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": [
            "a.io/x", "b.io/y", "c.io/z"]}}, _content_type="application/merge-patch+json",
            _preload_content=False)
    assert caught.value.status == 422 and "no new finalizers" in caught.value.body
    for left in (["b.io/y"], []):
        core.patch_namespaced_config_map("held", "default", {"metadata": {
            "finalizers": left}}, _content_type="application/merge-patch+json",
            _preload_content=False)
    assert kube.get("configmaps", "default", "held") is None  # the last one went: deleted
    assert [e[1] for e in kube.events if e[4]["metadata"]["name"] == "held"][-1] == "DELETED"
    api.close()


def test_background_gc_waits_for_a_held_owner(versioned: Any) -> None:
    kube = versioned("1.33")
    _, job = kube.create("jobs", "default", {"metadata": {"name": "j", "finalizers": [
        FINALIZER]}, "spec": {"template": {"metadata": {"labels": {}}, "spec": {}}}})
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j",
             "uid": job["metadata"]["uid"]}
    kube.create("configmaps", "default", {"metadata": {"name": "c", "ownerReferences": [owner]}})
    kube.delete("jobs", "default", "j")  # background: dependents go after the owner
    assert kube.get("configmaps", "default", "c") is not None
    kube.patch("jobs", "default", "j", {"metadata": {"finalizers": []}})
    assert kube.get("jobs", "default", "j") is None
    assert kube.get("configmaps", "default", "c") is None
