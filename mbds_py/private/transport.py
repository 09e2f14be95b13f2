"""TCP mesh between PBFT replicas: length-prefixed frames, reconnecting senders.

Messages are authenticated by the PBFT core itself (every message is signed by
its sender's validator key and checked against the validator set), so the
transport only moves bytes: it never decides anything.  Sends are best effort
(the protocol retransmits); a peer that is down costs a bounded queue.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from ..listen import bind_listener

log = logging.getLogger("mbds.transport")

MAX_FRAME = 64 * 1024 * 1024
QUEUE_LIMIT = 4096
_LEN = struct.Struct(">I")
HELLO = b"MBDS-PBFT/1"


@dataclass(frozen=True)
class PeerAddress:
    index: int
    host: str
    port: int


class PeerLink:
    """One outgoing connection with its own queue and reconnect loop."""

    def __init__(self, peer: PeerAddress, me: int):
        self.peer = peer
        self.me = me
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.task: asyncio.Task | None = None
        self.connected = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.peer.index}")

    def send(self, frame: bytes) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:  # peer down for long: drop the oldest, the protocol retransmits
            self.queue.get_nowait()
            self.queue.put_nowait(frame)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.peer.host, self.peer.port)
            except OSError:
                self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            self.connected = True
            try:
                writer.write(_LEN.pack(len(HELLO) + 4) + HELLO + self.me.to_bytes(4, "big"))
                while True:
                    frame = await self.queue.get()
                    writer.write(_LEN.pack(len(frame)) + frame)
                    # batch whatever else is already queued before draining
                    while not self.queue.empty() and writer.transport.get_write_buffer_size() < 1 << 20:
                        nxt = self.queue.get_nowait()
                        writer.write(_LEN.pack(len(nxt)) + nxt)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError, ConnectionError):
                self.connected = False
            finally:
                writer.close()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass


class Mesh:
    """Listens for peers and keeps one sending link per peer."""

    def __init__(self, me: int, listen: PeerAddress, peers: list[PeerAddress], on_frame: Callable[[bytes], None]):
        self.me = me
        self.listen = listen
        self.links = {p.index: PeerLink(p, me) for p in peers if p.index != me}
        self.on_frame = on_frame
        self.server: asyncio.base_events.Server | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on ``sock`` (handed down by the launcher) or bind the configured address."""
        sock = sock or bind_listener(self.listen.host, self.listen.port, what=f"replica {self.me} peer port")
        self.server = await asyncio.start_server(self._serve, sock=sock)
        for link in self.links.values():
            link.start()

    async def stop(self) -> None:
        if self.server:
            self.server.close()
        for link in self.links.values():
            await link.stop()

    def send(self, to: int, frame: bytes) -> None:
        link = self.links.get(to)
        if link is not None:
            link.send(frame)

    def broadcast(self, frame: bytes) -> None:
        for link in self.links.values():
            link.send(frame)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await self._frame(reader)
            if not first.startswith(HELLO):
                return
            while True:
                self.on_frame(await self._frame(reader))
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:  # the replica is stopping: end this connection quietly
            pass
        finally:
            writer.close()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes:
        (size,) = _LEN.unpack(await reader.readexactly(4))
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
        return await reader.readexactly(size)
