"""A TCP proxy the tests control: forwards loopback traffic, or black-holes it (a partition).

A partition here is what a dead uplink looks like to both ends: connections stay open but
nothing gets through, so only MQTT keepalive can notice. Healing closes the connections that
lived through the partition (bytes were dropped, their streams are broken) and forwards anew.
"""

from __future__ import annotations

import select
import socket
import threading


class PartitionProxy:
    def __init__(self, target_port: int, listen_port: int = 0):
        self.target = ("127.0.0.1", target_port)
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.port = self.server.getsockname()[1]
        self.blackhole = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        threading.Thread(target=self._pump, daemon=True, name="proxy-pump").start()

    def partition(self) -> None:
        self.blackhole = True

    def heal(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            a.close()
            b.close()
        self.blackhole = False

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self.heal()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()  # broker down: refuse, as the network would
                continue
            with self._lock:
                self._pairs.append((client, upstream))

    def _pump(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pairs = list(self._pairs)
            socks = [s for pair in pairs for s in pair]
            if not socks:
                self._stop.wait(0.02)
                continue
            try:
                readable, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for s in readable:
                pair = next((p for p in pairs if s in p), None)
                if pair is None:
                    continue
                other = pair[1] if s is pair[0] else pair[0]
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(pair)
                    continue
                if self.blackhole:
                    continue  # swallowed: nothing crosses a partition
                try:
                    other.sendall(data)
                except OSError:
                    self._drop(pair)

    def _drop(self, pair) -> None:
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for s in pair:
            s.close()
