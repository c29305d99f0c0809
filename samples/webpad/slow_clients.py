"""Slow-client defence for a thread-per-connection HTTP server: whole-request deadlines and slot reclaiming.

`http.server` only has a socket timeout, which restarts with every byte: a client sending one byte every few
seconds is never dropped, and a few dozen of them hold every connection slot (slowloris). Here each
connection reads through a `DeadlineReader`:

* a request (request line, headers and body) must arrive whole within `request_timeout_s` of its first
  byte, and no read may wait more than `idle_timeout_s` for the next bytes; either way the read raises
  `RequestTimedOut` (the server answers 408 when part of a request had arrived);
* when every slot is taken, `ConnectionTable.evict_slowest` shuts down the reading side of the connection that
  has been waiting longest for its current request (an idle keep-alive connection or a slow sender; never one
  whose request is being answered), so that a new client gets its slot: the way Apache's event MPM and Jetty's
  low-resources mode close idle connections under load.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from typing import Any, Callable


class RequestTimedOut(OSError):
    """A request that did not arrive in time; `partial` is True when some of its bytes had arrived."""

    def __init__(self, message: str, partial: bool) -> None:
        super().__init__(message)
        self.partial = partial

    def __str__(self) -> str:
        return str(self.args[0])


class DeadlineReader(io.RawIOBase):
    """The raw reading side of one connection (wrap it in `io.BufferedReader`), with the deadlines above."""

    def __init__(self, sock: socket.socket, idle_timeout_s: float, request_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.sock, self.idle_timeout_s, self.request_timeout_s, self.clock = sock, idle_timeout_s, \
            request_timeout_s, clock
        self.evicted = False
        self.reading, self.waiting_since, self.received, self.deadline = True, self.clock(), 0, None

    def begin(self) -> None:
        """The server starts waiting for the next request on this connection (for the first one, the wait
        counts from the accept: connections are evicted in the order they started waiting)."""
        if not self.reading or self.received:
            self.reading, self.waiting_since, self.received, self.deadline = True, self.clock(), 0, None

    def complete(self) -> None:
        """The current request has been read whole: no deadline while it is answered, not evictable."""
        self.reading, self.deadline = False, None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout_s = self.idle_timeout_s
        if self.deadline is not None:
            timeout_s = min(timeout_s, self.deadline - self.clock())
        if self.evicted or timeout_s <= 0:
            raise self._timed_out()
        self.sock.settimeout(timeout_s)
        try:
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            raise self._timed_out() from None
        if n == 0 and self.evicted:  # shut down while waiting
            raise self._timed_out()
        if n and self.deadline is None:
            self.deadline = self.clock() + self.request_timeout_s
        self.received += n
        return n

    def _timed_out(self) -> RequestTimedOut:
        if self.evicted:
            why = "the server was full and this connection had waited longest for its request"
        elif self.deadline is not None and self.deadline <= self.clock():
            why = f"the request did not arrive whole within {self.request_timeout_s:g} s of its first byte"
        else:
            why = f"the client sent nothing for {self.idle_timeout_s:g} s in the middle of a request"
        return RequestTimedOut(f"{why}; send requests whole and promptly", partial=self.received > 0)


class ConnectionTable:
    """The open connections' readers, in accept order, for eviction when the server is full."""

    def __init__(self, idle_timeout_s: float, request_timeout_s: float) -> None:
        self.idle_timeout_s, self.request_timeout_s = idle_timeout_s, request_timeout_s
        self._readers: dict[socket.socket, DeadlineReader] = {}
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> DeadlineReader:
        reader = DeadlineReader(sock, self.idle_timeout_s, self.request_timeout_s)
        with self._lock:
            self._readers[sock] = reader
        return reader

    def reader(self, sock: socket.socket) -> DeadlineReader:
        with self._lock:
            reader = self._readers.get(sock)
        return reader if reader is not None else self.add(sock)

    def remove(self, sock: socket.socket) -> None:
        """Forget a connection; call it before the socket is closed (an evictor must never touch a closed fd)."""
        with self._lock:
            self._readers.pop(sock, None)

    def partial(self) -> int:
        """How many connections are part-way through sending a request (some bytes read, not all)."""
        with self._lock:
            return sum(1 for r in self._readers.values() if r.reading and r.received and not r.evicted)

    def evict_slowest(self) -> bool:
        """Shut down the reading side of the connection waiting longest for its current request; its handler
        then gets `RequestTimedOut`. Returns False when every connection is busy answering a request."""
        with self._lock:
            waiting = [r for r in self._readers.values() if r.reading and not r.evicted]
            if not waiting:
                return False
            victim = min(waiting, key=lambda r: r.waiting_since)
            victim.evicted = True
            try:
                victim.sock.shutdown(socket.SHUT_RD)
            except OSError:  # the client is already gone: its handler is ending anyway
                pass
        return True
