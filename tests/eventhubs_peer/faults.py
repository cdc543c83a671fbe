"""Fault switches of the loopback peer, for chaos tests: freeze the broker, refuse sends.

    peer.faults.freeze()        # stop reading frames and sending deliveries (a hung broker)
    peer.faults.thaw()
    peer.faults.refuse_sends()  # reject every event sent to a hub with server-busy
    peer.faults.accept_sends()

(Dropping links and sockets is ``peer.force_detach()`` / ``peer.drop_connections()``.)
The switches are plain flags, set from the test's thread and read on the peer's loop; a
frozen peer polls them (a test double may; what it emulates is a broker that stops
answering, not a fast one).
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import codec

SERVER_BUSY = b"com.microsoft:server-busy"
POLL_S = 0.02


class PeerFaults:
    def __init__(self) -> None:
        self.frozen = False
        self.refusing = False
        self.refused = 0

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def refuse_sends(self) -> None:
        self.refusing = True

    def accept_sends(self) -> None:
        self.refusing = False

    async def while_frozen(self) -> None:
        while self.frozen:  # noqa: ASYNC110 - a flag set from another thread
            await asyncio.sleep(POLL_S)

    def refusal(self, kind: str) -> Any | None:
        """The outcome for an event sent to a hub while sends are refused, else None."""
        if not self.refusing or kind != "hub":
            return None
        self.refused += 1
        return codec.Rejected(error=codec.AMQPError(
            SERVER_BUSY, "The request was terminated because the namespace is busy "
            "(refused by the test peer).", None))
