"""One client socket: SASL, the AMQP header, Open/Close and the frame loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import codec
from .codec import Code
from .session import Session

if TYPE_CHECKING:
    from .server import PeerServer

log = logging.getLogger(__name__)

MAX_FRAME_SIZE = 65536  # what the service advertises; 1 MB messages arrive in ~16 frames
SASL_MECHANISMS = [b"ANONYMOUS", b"PLAIN", b"EXTERNAL", b"MSSBCBS"]
HIGH_WATER = 1 << 20


class ProtocolError(Exception):
    pass


class AmqpConnection:
    def __init__(
        self, peer: PeerServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.sessions: dict[int, Session] = {}
        self.remote_max_frame_size = 512
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False

    # -- output --------------------------------------------------------------------------

    def send(self, frame: Any, channel: int = 0) -> None:
        if not self.writer.is_closing():
            self.writer.write(codec.encode(frame, channel))

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def abort(self) -> None:
        """Fault injection: drop the socket without Close (the client sees a reset)."""
        self._closing = True
        self.writer.transport.abort()

    # -- input ---------------------------------------------------------------------------

    async def _read_frame(self) -> tuple[int, int, memoryview]:
        header = await self.reader.readexactly(8)
        size, doff, frame_type, channel = struct.unpack(">IBBH", header)
        if size < 8:
            raise ProtocolError(f"bad frame size {size}")
        body = await self.reader.readexactly(size - 8)
        return frame_type, channel, memoryview(body)[doff * 4 - 8 :]

    async def _handshake(self) -> None:
        header = await self.reader.readexactly(8)
        if header == codec.SASL_HEADER:
            self.writer.write(codec.SASL_HEADER)
            self.writer.write(
                codec.encode(
                    codec.perf.SASLMechanism(sasl_server_mechanisms=SASL_MECHANISMS), sasl=True
                )
            )
            _, _, body = await self._read_frame()
            code, _fields = codec.decode_frame(body)
            if code != Code.SASL_INIT:
                raise ProtocolError(f"expected sasl-init, got {code:#x}")
            self.writer.write(
                codec.encode(codec.perf.SASLOutcome(code=0, additional_data=None), sasl=True)
            )
            header = await self.reader.readexactly(8)
        if header != codec.AMQP_HEADER:
            self.writer.write(codec.AMQP_HEADER)
            raise ProtocolError(f"unsupported protocol header {header!r}")
        self.writer.write(codec.AMQP_HEADER)

    async def run(self) -> None:
        try:
            await self.peer.faults.while_frozen()
            await self._handshake()
            while not self._closing:
                _, channel, body = await self._read_frame()
                await self.peer.faults.while_frozen()
                if not body:
                    continue  # heartbeat
                code, fields = codec.decode_frame(body)
                self._dispatch(code, channel, fields)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # client went away
        except ProtocolError as exc:
            log.warning("closing connection: %s", exc)
        except Exception:
            log.exception("peer connection failed")
            self.send(
                codec.perf.CloseFrame(
                    error=codec.AMQPError(b"amqp:internal-error", "peer failure", None)
                )
            )
        finally:
            self._cleanup()

    def _dispatch(self, code: int, channel: int, fields: list[Any]) -> None:
        if code == Code.OPEN:
            self._on_open(fields)
        elif code == Code.BEGIN:
            begun = Session(self, channel, fields)
            self.sessions[channel] = begun
            self.send(begun.begin_reply(), channel)
        elif code == Code.CLOSE:
            self.send(codec.perf.CloseFrame(error=None))
            self._closing = True
            self.writer.close()
        elif code == Code.END:
            ended = self.sessions.pop(channel, None)
            if ended is not None:
                ended.close_all()
                self.send(codec.perf.EndFrame(error=None), channel)
        else:
            session = self.sessions.get(channel)
            if session is None:
                # The SDK detaches its links after it sent End; nothing left to do for those.
                log.debug("ignoring frame %#x on ended channel %d", code, channel)
                return
            handler: Callable[[list[Any]], None] | None = {
                Code.ATTACH: session.on_attach,
                Code.FLOW: session.on_flow,
                Code.TRANSFER: session.on_transfer,
                Code.DETACH: session.on_detach,
                Code.DISPOSITION: lambda _fields: None,  # our deliveries are pre-settled
            }.get(code)
            if handler is None:
                raise ProtocolError(f"unexpected performative {code:#x}")
            handler(fields)

    def _on_open(self, fields: list[Any]) -> None:
        self.remote_max_frame_size = fields[2] or 2**32 - 1
        self.send(
            codec.perf.OpenFrame(
                container_id=self.peer.container_id,
                hostname=None,
                max_frame_size=MAX_FRAME_SIZE,
                channel_max=65535,
                idle_timeout=None,
                outgoing_locales=None,
                incoming_locales=None,
                offered_capabilities=None,
                desired_capabilities=None,
                properties=None,
            )
        )
        if fields[4]:  # the client's idle timeout (ms): keep it from declaring us dead
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(fields[4] / 2000))

    async def _beat(self, interval: float) -> None:
        while not self.writer.is_closing():
            await asyncio.sleep(interval)
            await self.peer.faults.while_frozen()
            await self.write(codec.EMPTY_FRAME)

    def _cleanup(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for session in self.sessions.values():
            session.close_all()
        self.sessions.clear()
        self.writer.close()  # also after abort(): an unclosed StreamWriter warns when collected
