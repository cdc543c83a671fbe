"""Messages between the supervisor, the zygote and a pre-forked child.

One JSON object per SOCK_SEQPACKET datagram (message boundaries for free), file descriptors
as SCM_RIGHTS. Both ends are unnamed socketpairs: nothing on the filesystem or in the
abstract namespace that a job could connect to. Standard library only.

Supervisor -> zygote: ``run`` (fds: stdout, stderr and "done" write ends), ``kill``,
``next_dir`` (a slot's next job directory, made ahead).
Zygote -> supervisor: ``hello`` (layers, notes, whether it arms), ``exited`` (wait status,
setup error), ``reaped``.
Zygote -> child: ``arm`` (the job directory to confine itself to ahead), then the ``run``
message with the same fds (and the job's cgroup.procs where there is one).
Child -> zygote: ``confined`` or ``setup_failed``; a namespace's init: ``status``.
"""

from __future__ import annotations

import json
import socket

MAX_MESSAGE = 64 * 1024
MAX_FDS = 4

#: Not ``typing.TYPE_CHECKING``: importing typing would cost every job ~0.6 MB more to
#: fork and unmap (see zygote_main). Type checkers read this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Message = dict[str, Any]


def socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: Message, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"control message too large ({len(data)} bytes)")
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[Message | None, list[int]]:
    """One message and the fds that came with it; ``(None, [])`` at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data:
        return None, fds
    return json.loads(data), fds
