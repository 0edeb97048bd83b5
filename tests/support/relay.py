"""A TCP relay for tests to stand between a client and txchat: cut it (every connection
through it ends at once, and new ones are closed as soon as they arrive) and point it at
another server, as a network blip or a load balancer failing over would; or let it swallow
what goes one way while the connections stay up, as a link that is dying does before it is
cut (what was sent then is lost, and the sender does not know); or hold what servers send, as
a client that has stopped reading would, until released."""

from __future__ import annotations

import socket
import threading


class Relay:
    def __init__(self, targetPort: int, window: int | None = None) -> None:
        """@param window: the receive buffer of the relay's sockets toward the server (bytes):
            small, a server's output backs up after little of it while held (L{hold})."""
        self.target = targetPort
        self.window = window
        self.accepted = 0
        self._open = True
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        # What to swallow: which way (True: what clients send; False: what servers send) on which
        # sockets (the connections open at swallow(): they swallow until they end, whenever
        # their last bytes are read; connections made later pass everything).
        self._swallowing: tuple[bool, frozenset[socket.socket]] | None = None
        self._swallowed = 0  # bytes swallowed since swallow()
        self._held: frozenset[socket.socket] = frozenset()  # server sockets not read until release()
        self._flowing = threading.Event()
        self._flowing.set()
        self._news = threading.Condition(self._lock)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.accepted += 1
                isOpen, target = self._open, self.target
            if not isOpen:
                client.close()
                continue
            server = socket.socket()
            try:
                if self.window is not None:  # before connecting: the window it offers
                    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.window)
                server.settimeout(5)
                server.connect(("127.0.0.1", target))
            except OSError:
                server.close()
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets |= {client, server}
            for source, sink, toServer in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, toServer), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, toServer: bool) -> None:
        try:
            while (toServer or source not in self._held or self._flowing.wait()) and (data := source.recv(65536)):
                with self._lock:
                    swallowing = self._swallowing
                    swallow = swallowing is not None and swallowing[0] is toServer and source in swallowing[1]
                    if swallow:
                        self._swallowed += len(data)
                        self._news.notify_all()
                if not swallow:
                    sink.sendall(data)
        except OSError:
            pass
        self._end(source, sink)

    def swallow(self, toServer: bool) -> None:
        """On the connections open now, until they end, drop what clients send (C{toServer}) or
        what servers send, and keep the connections up."""
        with self._lock:
            self._swallowing, self._swallowed = (toServer, frozenset(self._sockets)), 0

    def hold(self) -> None:
        """On the connections open now, stop reading what servers send (after at most one more
        read, if one is under way) until L{release}: it backs up into the servers, as behind
        clients that have stopped reading."""
        with self._lock:
            self._held = frozenset(self._sockets)
            self._flowing.clear()

    def release(self) -> None:
        """Read what servers send again."""
        self._flowing.set()

    def waitSwallowed(self, count: int, timeout: float = 30) -> None:
        """Wait until at least C{count} bytes have been swallowed since L{swallow}."""
        with self._news:
            if not self._news.wait_for(lambda: self._swallowed >= count, timeout):
                raise RuntimeError(f"only {self._swallowed} of {count} bytes came to be swallowed")

    def _end(self, *ends: socket.socket) -> None:
        for end in ends:
            with self._lock:
                self._sockets.discard(end)
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def cut(self) -> None:
        self.release()  # held pumps go on, to find their sockets closed
        with self._lock:
            self._open = False
            ends = list(self._sockets)
        self._end(*ends)

    def resume(self, targetPort: int | None = None) -> None:
        with self._lock:
            self._open = True
            if targetPort is not None:
                self.target = targetPort

    def close(self) -> None:
        self.cut()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
