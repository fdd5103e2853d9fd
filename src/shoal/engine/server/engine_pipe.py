"""The engine child's output pipe: length-prefixed pickled messages, read by the parent's event loop itself.

A reader thread blocked in `recv()` needs the GIL back after each of its reads, and while the event loop is
busy streaming it can wait up to the interpreter's switch interval (5 ms) for it, longer than a GPU step (~2 ms).
Read in the loop, every message that arrived is handled at the loop's next turn, as many as came, with no thread
hop and no GIL hand-off.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import struct
from collections.abc import Callable

_HEADER = struct.Struct("<Q")  # payload length in bytes
PIPE_BYTES = 1 << 20  # Linux's default cap for an unprivileged pipe (/proc/sys/fs/pipe-max-size)


def enlarge(fd: int, size: int = PIPE_BYTES) -> int:
    """Grow the pipe's buffer (64 KiB by default, ~16 steps of 64 requests) so that the engine never blocks on a write
    while the HTTP process is busy for a moment; returns the size it has (unchanged where the system refuses)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


def write_message(fd: int, message: object) -> None:
    """Blocking write of one message (the child's side)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def split_messages(buffer: bytearray) -> list[object]:
    """Take every whole message off the front of `buffer`; a partial one stays for the next read."""
    messages, start = [], 0
    while len(buffer) - start >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer, start)
        end = start + _HEADER.size + size
        if end > len(buffer):
            break
        messages.append(pickle.loads(buffer[start + _HEADER.size:end]))
        start = end
    del buffer[:start]
    return messages


class MessageReader(asyncio.Protocol):
    """`on_messages(list)` gets the messages of each read in order; `on_closed()` once the child's end closes."""

    def __init__(self, on_messages: Callable[[list], None], on_closed: Callable[[], None]) -> None:
        self._buffer = bytearray()
        self._on_messages = on_messages
        self._on_closed = on_closed

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if messages := split_messages(self._buffer):
            self._on_messages(messages)

    def eof_received(self) -> None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_closed()
