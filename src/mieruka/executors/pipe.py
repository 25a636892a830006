"""Length-prefixed pickled messages over a socket pair between the engine and a worker.

The engine reads everything a worker has sent with one non-blocking recv and decodes as many
messages as arrived; multiprocessing's Connection would poll and read once per message."""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from typing import Any

_HEADER = struct.Struct("!I")


class MessagePipe:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._send_lock = threading.Lock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(data)) + data)

    def recv(self) -> Any:
        """Block until one whole message arrived; EOFError when the other side closed."""
        while True:
            message = self._decode_one()
            if message is not _NOTHING:
                return message
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("the other end closed the pipe")
            self._buffer += chunk

    def read_available(self) -> tuple[list[Any], bool]:
        """Every whole message received so far, without blocking; and whether the pipe closed."""
        closed = False
        while True:
            try:
                chunk = self.sock.recv(1 << 18, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            self._buffer += chunk
            if len(chunk) < 1 << 18:
                break
        messages = []
        while (message := self._decode_one()) is not _NOTHING:
            messages.append(message)
        return messages, closed

    def _decode_one(self) -> Any:
        if len(self._buffer) < _HEADER.size:
            return _NOTHING
        (size,) = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + size
        if len(self._buffer) < end:
            return _NOTHING
        message = pickle.loads(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        return message

    def close(self) -> None:
        self.sock.close()


_NOTHING = object()
