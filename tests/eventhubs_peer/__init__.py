"""A loopback Event Hubs peer for integration tests: enough AMQP 1.0 for azure-eventhub 5.x.

In a test (the peer runs on its own thread and event loop, so sync SDK clients work too):

    async with EventHubsPeer(hubs={"requests": 4, "results": 4}) as peer:
        EventHubProducerClient.from_connection_string(peer.connection_string,
                                                      eventhub_name="requests")
        await peer.drop_connections()   # abort every socket: the SDK's reconnect path
        await peer.force_detach()       # detach hub/consumer links, keep sockets
        peer.events("requests", "0")    # what a partition holds (StoredEvent list)

As a separate process, for workers running as their own OS processes:

    python -m tests.eventhubs_peer --port 0 --hub requests:4 --hub results:4
    # first stdout line: the namespace connection string; serves until SIGTERM/SIGINT

Blob checkpoints: ``tests.eventhubs_peer.azurite`` (Azurite, from ``npm install``).

With ``ssl_context=`` the peer serves amqps (TLS; ``tests.eventhubs_peer.tls`` makes a loopback
certificate), which is what the SDK uses with a token credential; ``jwt_tokens=`` restricts
which Entra ID tokens a put-token may carry; ``peer.put_tokens()`` lists what was sent.

Supported: SASL ANONYMOUS/PLAIN/EXTERNAL (any credentials accepted), $cbs put-token (token
type ``servicebus.windows.net:sastoken`` or ``jwt``; others refused with 400),
$management READ (hub and partition properties), sending single events and batches (to the
hub, routed by partition key with the service's hash or round-robin, or to a partition),
1 MB max-message-size (advertised on attach, enforced with message-size-exceeded), receiving
with selector filters (offset, sequence number, enqueued time, ``@latest``, > and >=),
link credit and drain, independent consumer groups, owner-level (epoch) stealing, receiver
runtime metrics. Not supported: WebSockets, retention/expiry, real authorisation,
geo-replication offsets, idempotent publishing, AMQP transactions, $management operations
other than READ. Everything is in memory and lost on stop.

This package imports the SDK's private ``azure.eventhub._pyamqp`` (see codec.py): keep
azure-eventhub pinned to a range these tests pass with.
"""

from .server import EventHubsPeer, PeerServer, PutToken, connection_string

__all__ = ["EventHubsPeer", "PeerServer", "PutToken", "connection_string"]
