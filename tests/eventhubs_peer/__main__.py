"""``python -m tests.eventhubs_peer --port N --hub requests:4 ...``

Prints the namespace connection string as the first stdout line, then serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .server import ONE_MB, PeerServer


def parse_hub(value: str) -> tuple[str, int]:
    name, _, count = value.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"bad hub {value!r}, expected NAME[:PARTITIONS]")
    return name, int(count or 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.eventhubs_peer", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--hub", action="append", type=parse_hub, required=True, metavar="NAME:PARTITIONS"
    )
    parser.add_argument("--max-message-size", type=int, default=ONE_MB)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    server = PeerServer(
        dict(args.hub), host=args.host, port=args.port, max_message_size=args.max_message_size
    )
    await server.start()
    print(server.connection_string, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
