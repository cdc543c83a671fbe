"""A loopback Event Hubs peer for integration tests (AMQP 1.0, enough for azure-eventhub 5.x).

    peer = EventHubsPeer(hubs={"requests": 4, "results": 4})
    await peer.start()
    EventHubProducerClient.from_connection_string(peer.connection_string, eventhub_name="requests")
    await peer.stop()

Run standalone (other OS processes connect to it):
    python -m tests.eventhubs_peer --port 0 --hub requests:4 --hub results:4
"""

from .server import EventHubsPeer, PeerServer, connection_string

__all__ = ["EventHubsPeer", "PeerServer", "connection_string"]
