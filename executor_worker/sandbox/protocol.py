"""Messages between the supervisor, the zygote and a pre-forked child.

One JSON object per SOCK_SEQPACKET datagram (message boundaries for free), file descriptors
as SCM_RIGHTS. Both ends are unnamed socketpairs: nothing on the filesystem or in the
abstract namespace that a job could connect to. Standard library only.

Supervisor -> zygote: ``run`` (fds: stdout, stderr and "done" write ends), ``kill``
(``done``: the supervisor read the job's "done" byte, so its ``exited`` need not come).
Zygote -> supervisor: ``hello`` (layers, notes, whether it arms), ``exited`` (wait status,
setup error), ``reaped``.
Zygote -> child: the ``run`` message with the same fds (and the job's cgroup.procs where
there is one), marshalled, not JSON (see send_to_child).
Child -> zygote: ``confined`` or ``setup_failed``; a namespace's init: ``status``.
"""

from __future__ import annotations

import json
import marshal
import socket

MAX_MESSAGE = 64 * 1024
MAX_FDS = 4

#: Not ``typing.TYPE_CHECKING``: importing typing would cost every job ~0.6 MB more to
#: fork and unmap (see zygote_main). Type checkers read this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any

    Message = dict[str, Any]
    #: A child's end: the C socket type will do (socket.socket is a subclass).
    _Channel = _socket.socket


def socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: Message, fds: list[int] | tuple[int, ...] = ()) -> None:
    _send_datagram(sock, json.dumps(message, separators=(",", ":")).encode(), fds)


def send_to_child(sock: socket.socket, message: Message,
                  fds: list[int] | tuple[int, ...] = ()) -> None:
    """Zygote -> child. A job process pays for every page it writes (a copy of its
    parent's: ~2.5 us each here), and decoding JSON writes ~50 of them (json's Python layer,
    its regex, the scanner) where ``marshal.loads`` is one C call. Only ever decoded by a
    child, from its zygote, before any job code runs: the zygote itself never unmarshals."""
    _send_datagram(sock, marshal.dumps(message), fds)


def _send_datagram(sock: socket.socket, data: bytes, fds: list[int] | tuple[int, ...]) -> None:
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"control message too large ({len(data)} bytes)")
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


_FD_SPACE = socket.CMSG_SPACE(MAX_FDS * 4)


def recv_from_zygote(sock: _Channel) -> tuple[Message | None, list[int]]:
    """In a child: one message of :func:`send_to_child` and its fds; ``(None, [])`` at EOF.
    ``socket.recv_fds`` is Python (and ``array``) where this is a C call and a slice."""
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, _FD_SPACE)
    fds: list[int] = []
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += memoryview(cdata)[:len(cdata) - len(cdata) % 4].cast("i").tolist()
    if not data:
        return None, fds
    message: Message = marshal.loads(data)
    return message, fds


def confined(received: int, now: int, times: dict[str, int]) -> bytes:
    """Child -> zygote: the ``confined`` report, as JSON, formatted rather than encoded
    (json.dumps is Python code a job process would copy pages for). ``times``: our own
    names (identifiers) and integers."""
    fields = ",".join(f'"{name}":{int(value)}' for name, value in times.items())
    return (f'{{"op":"confined","t_received":{int(received)},"t":{int(now)},'
            f'"times":{{{fields}}}}}').encode()


def recv(sock: socket.socket) -> tuple[Message | None, list[int]]:
    """One message and the fds that came with it; ``(None, [])`` at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data:
        return None, fds
    return json.loads(data), fds
