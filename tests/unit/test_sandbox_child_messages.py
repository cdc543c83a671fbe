"""What a job process decodes and says on its way to the job's code, done with as little
Python as possible (every page it writes is a copy of its parent's), must mean exactly what
the plain standard-library calls would: the zygote's marshalled messages and their fds,
the formatted ``confined`` report, and inputs.json."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest

from executor_worker.sandbox import protocol
from executor_worker.sandbox.zygote_child import _decode_inputs


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """The zygote's end and the child's end of a child's channel."""
    zygote, child = protocol.socketpair()
    yield zygote, child
    zygote.close()
    child.close()


def test_messages_to_a_child_arrive_whole_with_their_descriptors(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    zygote, child = pair
    r, w = os.pipe()
    try:
        message = {"op": "run", "id": "k", "dir": "/tmp/j-1", "slot": 3,
                   "limits": {"memory": 256 << 20, "cpu": 2, "nproc": 64}}
        protocol.send_to_child(zygote, message, [r, w])
        got, fds = protocol.recv_from_zygote(child)
        assert got == message
        assert len(fds) == 2
        os.write(fds[1], b"through the passed pipe")
        assert os.read(fds[0], 64) == b"through the passed pipe"
        for fd in fds:
            os.close(fd)
        protocol.send_to_child(zygote, {"op": "arm", "dir": "/tmp/j-2", "slot": 0})
        assert protocol.recv_from_zygote(child) == ({"op": "arm", "dir": "/tmp/j-2",
                                                     "slot": 0}, [])
        zygote.close()
        assert protocol.recv_from_zygote(child) == (None, [])
    finally:
        os.close(r)
        os.close(w)


def test_a_child_reads_from_a_bare_c_socket_too(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    import _socket

    zygote, child = pair
    bare = _socket.socket(fileno=child.detach())
    try:
        protocol.send_to_child(zygote, {"op": "arm", "dir": "/d", "slot": 1})
        assert protocol.recv_from_zygote(bare) == ({"op": "arm", "dir": "/d", "slot": 1}, [])
    finally:
        bare.close()


def test_oversized_messages_are_refused_before_sending(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    zygote, _ = pair
    with pytest.raises(ValueError, match="too large"):
        protocol.send_to_child(zygote, {"op": "arm", "dir": "x" * protocol.MAX_MESSAGE})


def test_the_confined_report_is_the_json_the_zygote_reads(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    zygote, child = pair
    times = {"t_forked": 11, "t_prepared": 12, "t_armed": 13}
    os.write(child.fileno(), protocol.confined(100, 200, times))
    message, fds = protocol.recv(zygote)
    assert fds == []
    assert message == {"op": "confined", "t_received": 100, "t": 200, "times": times}


@pytest.mark.parametrize("value", [
    {}, [], 0, -3, 2.5, 1e300, None, True, "plain", "é ☃ \u2028 \"quoted\" \\",
    {"nested": {"list": [1, [2, [3, {"x": None}]]]}, "n": 10**30},
])
def test_inputs_decode_as_json_loads_does(value: object) -> None:
    for encoded in (json.dumps(value), json.dumps(value, ensure_ascii=False),
                    json.dumps(value, indent=2)):
        data = encoded.encode()
        assert _decode_inputs(data) == json.loads(data)


@pytest.mark.parametrize("data", [
    b" {}", b"{} ", b"\n[1]\n", "{\"a\": 1}".encode("utf-16"), b"\xef\xbb\xbf{}",
])
def test_inputs_the_supervisor_would_not_write_still_decode_as_json_loads(data: bytes) -> None:
    try:
        expected: object = json.loads(data)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            _decode_inputs(data)
    else:
        assert _decode_inputs(data) == expected


@pytest.mark.parametrize("data", [b"", b"{", b"{} x", b"[1,]", b"\xff", b"NaNx"])
def test_malformed_inputs_fail_as_json_loads_fails(data: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(data)
    with pytest.raises(type(expected.value)):
        _decode_inputs(data)


def test_a_socketpair_is_seqpacket(pair: tuple[socket.socket, socket.socket]) -> None:
    # Message boundaries are what lets recv_from_zygote read one message per call.
    zygote, _ = pair
    assert zygote.type == socket.SOCK_SEQPACKET
