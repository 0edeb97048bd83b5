"""A TCP relay for tests to stand between a client and txchat: cut it (every connection
through it ends at once, and new ones are closed as soon as they arrive) and point it at
another server, as a network blip or a load balancer failing over would."""

from __future__ import annotations

import socket
import threading


class Relay:
    def __init__(self, targetPort: int) -> None:
        self.target = targetPort
        self.accepted = 0
        self._open = True
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
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
            try:
                server = socket.create_connection(("127.0.0.1", target), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        self._end(source, sink)

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
