"""A worker as a service: probes, metrics, and a clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("kind", ["llm", "executor"])
def test_worker_serves_probes_and_metrics_and_stops_on_sigterm(kind: str) -> None:
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "SHUTDOWN_GRACE_S": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "llmexec", "worker", kind, "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                status, body = get(port, "/api/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("service never listened: " + (proc.stderr.read() if proc.stderr else ""))
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["service"] == kind
        for _ in range(50):
            status, body = get(port, "/api/v1/ready")
            if status == 200:
                break
            time.sleep(0.1)
        ready = json.loads(body)
        assert status == 200 and ready["ready"] is True and ready["bus_connected"] is True
        if kind == "executor":
            assert "rlimits" in health["sandbox"]["layers"]
            assert isinstance(health["sandbox"]["missing"], dict)
        status, metrics = get(port, "/metrics")
        assert status == 200 and "llmexec_handler_seconds" in metrics
        assert get(port, "/nope")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "service.stopping" in events and "service.stopped" in events
