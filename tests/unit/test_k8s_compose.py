"""compose.yaml and the emulator's Config.json have the shape their tools need.

There is no Docker engine where this suite runs, so ``docker compose up`` itself is not
run here: these tests check what can be checked without one — the Event Hubs emulator's
Config.json against our own schema of its documented format (hubs, partitions, consumer
groups), that the hubs and groups are the ones the workers use, that the worker services
build real Dockerfile targets with the k8s commands and known settings, and that nothing
is published beyond loopback. Azurite, here and in the tests, runs without telemetry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from llmexec.assembly import EXECUTOR_GROUP, LLM_GROUP
from pipeline.bus.settings import BusSettings
from tests.eventhubs_peer.azurite import AzuriteUnavailable, azurite_command, find_binary
from tests.unit.test_k8s_manifests import env_names

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_IMAGE = "mcr.microsoft.com/azure-messaging/eventhubs-emulator"
CONFIG_MOUNT = "/Eventhubs_Emulator/ConfigFiles/Config.json"

#: The emulator's configuration format as Microsoft documents it (one namespace named
#: emulatorNs1, at most 10 hubs, PartitionCount as a string, at most 20 consumer groups,
#: $Default implicit and not to be listed), written here as a schema of our own.
EMULATOR_CONFIG = {
    "type": "object", "required": ["UserConfig"], "additionalProperties": False,
    "properties": {"UserConfig": {
        "type": "object", "required": ["NamespaceConfig", "LoggingConfig"],
        "additionalProperties": False, "properties": {
            "NamespaceConfig": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["Type", "Name", "Entities"],
                "additionalProperties": False, "properties": {
                    "Type": {"const": "EventHub"}, "Name": {"const": "emulatorNs1"},
                    "Entities": {"type": "array", "minItems": 1, "maxItems": 10, "items": {
                        "type": "object", "required": ["Name", "PartitionCount"],
                        "additionalProperties": False, "properties": {
                            "Name": {"type": "string", "minLength": 1},
                            "PartitionCount": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                            "ConsumerGroups": {"type": "array", "maxItems": 20, "items": {
                                "type": "object", "required": ["Name"],
                                "additionalProperties": False, "properties": {"Name": {
                                    "type": "string",
                                    "not": {"pattern": "^\\$[Dd]efault$"}}}}}}}}}}},
            "LoggingConfig": {"type": "object", "required": ["Type"], "properties": {
                "Type": {"enum": ["File", "Console", "File,Console", "Console,File"]}}}}}},
}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def emulator_config() -> dict[str, Any]:
    service = compose()["services"]["emulator"]
    (mount,) = [v for v in service["volumes"] if CONFIG_MOUNT in v]
    host_path = mount.split(":")[0]
    return dict(json.loads((ROOT / host_path).read_text()))


def test_the_emulator_config_has_the_documented_shape() -> None:
    jsonschema.validate(emulator_config(), EMULATOR_CONFIG)


def test_the_emulator_schema_can_fail() -> None:
    bad = emulator_config()
    bad["UserConfig"]["NamespaceConfig"][0]["Entities"][0]["PartitionCount"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, EMULATOR_CONFIG)


def test_the_four_hubs_and_the_workers_consumer_groups_are_declared() -> None:
    (namespace,) = emulator_config()["UserConfig"]["NamespaceConfig"]
    groups = {e["Name"]: {g["Name"] for g in e.get("ConsumerGroups", [])}
              for e in namespace["Entities"]}
    hubs = BusSettings().hubs
    assert set(groups) == {hubs.requests, hubs.executions, hubs.results, hubs.deadletter}
    assert LLM_GROUP in groups[hubs.requests]
    assert EXECUTOR_GROUP in groups[hubs.executions]
    assert "results-follower" in groups[hubs.results]  # consumers.results default
    assert "deadletter-inspect" in groups[hubs.deadletter]  # consumers.deadletters default


def dockerfile_targets() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE))


@pytest.mark.parametrize(("service", "target", "deployment"), [
    ("llm-worker", "llm-service", "llm-service-deployment.yaml"),
    ("executor-worker", "executor-service", "executor-service-deployment.yaml"),
])
def test_workers_build_the_images_and_run_as_in_the_cluster(
        service: str, target: str, deployment: str) -> None:
    svc = compose()["services"][service]
    assert svc["build"]["target"] == target and target in dockerfile_targets()
    assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    dep = yaml.safe_load((ROOT / "k8s" / deployment).read_text())
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert svc["command"] == container["args"]
    assert set(map(str.lower, svc["environment"])) <= env_names()
    # Plaintext AMQP to the emulator stays on loopback: the worker shares its network.
    assert svc["network_mode"] == "service:emulator"
    conn = svc["environment"]["EVENT_HUB_CONNECTION_STRING"]
    assert "UseDevelopmentEmulator=true" in conn and "Endpoint=sb://localhost;" in conn
    assert "BlobEndpoint=http://azurite:10000/" in svc["environment"]["STORAGE_CONNECTION_STRING"]
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]


def test_the_executor_runs_heavy_work_locally_and_never_gets_the_llm_key() -> None:
    env = compose()["services"]["executor-worker"]["environment"]
    assert env["HEAVY_RUNNER"] == "local"
    assert not set(env) & {"LLM_API_KEY", "ANTHROPIC_API_KEY"}


def test_images_ports_and_licence() -> None:
    services = compose()["services"]
    assert set(services) == {"emulator", "azurite", "llm-worker", "executor-worker"}
    assert services["emulator"]["image"].split(":")[0] == EMULATOR_IMAGE
    # The licence is accepted by whoever starts it, never by this file.
    assert services["emulator"]["environment"]["ACCEPT_EULA"].startswith("${ACCEPT_EULA:?")
    assert services["emulator"]["environment"]["BLOB_SERVER"] == "azurite"
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    assert "--disableTelemetry" in services["azurite"]["command"]


def test_azurite_in_the_tests_runs_on_loopback_without_telemetry() -> None:
    cmd = azurite_command("azurite-blob", "127.0.0.1", 10000)
    assert "--disableTelemetry" in cmd
    assert cmd[cmd.index("--blobHost") + 1] == "127.0.0.1"
    try:
        binary = find_binary()
    except AzuriteUnavailable as exc:
        if os.environ.get("AZURITE_REQUIRED") == "1":
            raise
        pytest.skip(f"Azurite unavailable: {exc}")
    # The installed Azurite knows the flag (an old one would refuse to start with it).
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60)
    assert "--disableTelemetry" in out.stdout + out.stderr
