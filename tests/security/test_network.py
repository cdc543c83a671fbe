"""No network: real listeners in the test process must never see the job."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from tests.security.conftest import Harness

pytestmark = pytest.mark.security

#: Job-side: try ``attempt`` and print BLOCKED with the exception, or CONNECTED.
PROBE = (
    "import socket\n"
    "def probe(label, attempt):\n"
    "    try:\n"
    "        attempt()\n"
    "        print(label, 'CONNECTED')\n"
    "    except Exception as exc:\n"
    "        print(label, 'BLOCKED', type(exc).__name__, exc)\n"
)


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def accepted_any(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


async def test_tcp_to_loopback_listener_never_arrives(
    harness: Harness, tcp_listener: socket.socket
) -> None:
    port = tcp_listener.getsockname()[1]
    code = PROBE + (
        "port = inputs['port']\n"
        "probe('v4', lambda: socket.create_connection(('127.0.0.1', port), timeout=1))\n"
        "probe('v6', lambda: socket.create_connection(('::1', port), timeout=1))\n"
        "probe('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))\n"
    )
    outcome = await harness.run(code, inputs={"port": port})
    assert outcome.status == "succeeded", outcome
    assert "CONNECTED" not in outcome.stdout
    assert outcome.stdout.count("BLOCKED") == 3
    assert not accepted_any(tcp_listener), "a job reached the worker's TCP listener"


async def test_udp_to_loopback_never_arrives(harness: Harness) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.3)
    try:
        code = PROBE + (
            "def send():\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.sendto(b'exfil', ('127.0.0.1', inputs['port']))\n"
            "probe('udp', send)\n"
        )
        outcome = await harness.run(code, inputs={"port": receiver.getsockname()[1]})
        assert "udp BLOCKED" in outcome.stdout, outcome
        with pytest.raises(TimeoutError):
            receiver.recvfrom(100)
    finally:
        receiver.close()


async def test_outside_address_and_dns_are_unreachable(harness: Harness) -> None:
    code = PROBE + (
        "probe('tcp-out', lambda: socket.create_connection(('1.1.1.1', 443), timeout=1))\n"
        "probe('udp-out', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        ".sendto(b'x', ('8.8.8.8', 53)))\n"
        "probe('dns', lambda: socket.getaddrinfo('example.com', 443))\n"
        "probe('dns-name', lambda: socket.gethostbyname('pypi.org'))\n"
    )
    outcome = await harness.run(code, timeout_s=10)
    assert outcome.status == "succeeded", outcome
    assert "CONNECTED" not in outcome.stdout
    assert outcome.stdout.count("BLOCKED") == 4, outcome.stdout


async def test_unix_sockets_of_the_worker_are_unreachable(harness: Harness) -> None:
    folder = tempfile.mkdtemp(prefix="llmexec-sock-")
    os.chmod(folder, 0o777)  # so that only the sandbox, not file modes, can stop the job
    path = os.path.join(folder, "control.sock")
    named = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    named.bind(path)
    os.chmod(path, 0o777)
    named.listen(4)
    named.setblocking(False)
    abstract_name = f"\0llmexec-test-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    abstract.listen(4)
    abstract.setblocking(False)
    try:
        code = PROBE + (
            "def connect(addr):\n"
            "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "    s.connect(addr)\n"
            "probe('named', lambda: connect(inputs['path']))\n"
            "probe('abstract', lambda: connect('\\0' + inputs['abstract']))\n"
        )
        outcome = await harness.run(code, inputs={"path": path, "abstract": abstract_name[1:]})
        assert outcome.stdout.count("BLOCKED") == 2, outcome
        assert not accepted_any(named)
        assert not accepted_any(abstract)
    finally:
        named.close()
        abstract.close()
        os.unlink(path)
        os.rmdir(folder)


async def test_socketpair_inside_the_job_still_works(harness: Harness) -> None:
    code = (
        "import socket\n"
        "a, b = socket.socketpair()\n"
        "a.sendall(b'ping')\n"
        "print(b.recv(4).decode())\n"
    )
    outcome = await harness.run(code)
    assert outcome.status == "succeeded", outcome
    assert outcome.stdout == "ping\n"
