"""A loopback RTMP relay that keeps the stream key out of ffmpeg's command line.

Debian 12's ffmpeg (5.1) takes its output URL only from argv, and argv is world
readable (``ps``, /proc/PID/cmdline). So ffmpeg is given
``rtmp://127.0.0.1:<relay port>/<app>/<placeholder>``, where the placeholder is a
random string exactly as long as the real stream name (key and query): every
RTMP message keeps its length, so the relay needs no RTMP parsing. The relay
connects to the real ingest (TLS for ``rtmps://``) and, in the client → server
direction only, swaps the placeholder bytes for the real name (releaseStream,
FCPublish and publish each carry it), holding back a tail that could be the start
of a placeholder split across reads (for at most 0.2 s, so a message that merely
ends like one is not stalled).

It protects against other local users: a connection whose peer socket does not
belong to our own uid (looked up in /proc/net/tcp and tcp6) is refused, so
another user cannot borrow the relay to publish as this kiosk. A process of the
same uid can read the key from the agent's settings anyway.

The connect command still carries ``tcUrl=rtmp://127.0.0.1:<port>/<app>``;
central decides hall and main publishes by the stream name alone (only its own
internal relay into main_hls is judged by tcUrl), so nothing depends on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import ssl
import string
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

RELAYED_SCHEMES = {"rtmp": 1935, "rtmps": 443}
_ESTABLISHED = "01"  # the st column of /proc/net/tcp
_PLACEHOLDER_ALPHABET = string.ascii_letters + string.digits
_READ = 64 * 1024
_LOG_EVERY_S = 10.0
# ffmpeg writes a message's payload in one write(), so the rest of a placeholder cut by a read is
# already in the socket. RTMP's setup is request/response: bytes that merely look like the start
# of a placeholder (a message ending in "live" when the placeholder begins with "e") must not wait
# for data that only comes after the server's answer.
_HOLD_S = 0.2


def relayable(url: str) -> bool:
    """Whether the relay can carry this ingest URL (RTMP(S) with a stream name and no user:password)."""
    parts = urlsplit(url)
    return (parts.scheme.lower() in RELAYED_SCHEMES and bool(parts.hostname) and "@" not in parts.netloc
            and bool(_split_name(url)[1]))


def _split_name(url: str) -> tuple[str, str]:
    """(path up to the last '/', the stream name with its query): the name is what ffmpeg sends as the playpath."""
    parts = urlsplit(url)
    head, _, name = parts.path.rpartition("/")
    return head + "/", name + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    tls: bool
    local_path: str  # "/app/<placeholder>"
    placeholder: bytes
    name: bytes

    @classmethod
    def of(cls, url: str) -> _Target:
        if not relayable(url):
            raise ValueError("the key relay carries only rtmp:// or rtmps:// URLs with a stream name and no user:password")
        parts = urlsplit(url)
        head, name = _split_name(url)
        raw = name.encode()
        placeholder = "".join(secrets.choice(_PLACEHOLDER_ALPHABET) for _ in raw).encode()
        scheme = parts.scheme.lower()
        return cls(parts.hostname or "", parts.port or RELAYED_SCHEMES[scheme], scheme == "rtmps",
                   head + placeholder.decode(), placeholder, raw)


class Replacer:
    """Streaming search-and-replace of equal-length byte strings, whatever the read boundaries."""

    def __init__(self, old: bytes, new: bytes):
        if len(old) != len(new) or not old:
            raise ValueError("the placeholder and the name must be non-empty and of the same length")
        self.old, self.new = old, new
        self.replaced = 0
        self._held = b""

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, data: bytes) -> bytes:
        buf = self._held + data
        out, start = [], 0
        while (i := buf.find(self.old, start)) >= 0:
            out += (buf[start:i], self.new)
            start = i + len(self.old)
            self.replaced += 1
        rest = buf[start:]
        keep = self._partial(rest)
        self._held = rest[len(rest) - keep:] if keep else b""
        out.append(rest[:len(rest) - keep])
        return b"".join(out)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _partial(self, rest: bytes) -> int:
        # The longest tail of `rest` that begins the placeholder: it may complete in the next read.
        first = self.old[:1]
        i = rest.find(first, max(0, len(rest) - (len(self.old) - 1)))
        while i >= 0:
            if self.old.startswith(rest[i:]):
                return len(rest) - i
            i = rest.find(first, i + 1)
        return 0


def _proc_addr(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    if sys.byteorder == "little":  # the kernel prints each 32-bit word of the address in host order
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip, int(port, 16)


def _norm(addr: tuple[Any, ...]) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    ip = ipaddress.ip_address(addr[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip, int(addr[1])


def peer_uid(peer: tuple[Any, ...], local: tuple[Any, ...]) -> int | None:
    """The uid owning the client socket of a loopback TCP connection (None if it is gone or not found).

    The client's own entry in /proc/net/tcp{,6} has the peer's address as its local
    address and ours as its remote one; its uid column is the socket's owner.
    """
    want_local, want_remote = _norm(peer), _norm(local)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    # Only a live connection: a TIME_WAIT entry of an old one with the same ports shows uid 0.
                    if len(fields) < 8 or fields[3] != _ESTABLISHED:
                        continue
                    if _proc_addr(fields[1]) == want_local and _proc_addr(fields[2]) == want_remote:
                        return int(fields[7])
        except OSError:
            continue
    return None


class KeyRelay:
    """The relay, on an asyncio loop in its own thread (the streamer is thread-supervised)."""

    def __init__(self, target_url: str, *, max_connections: int = 4, connect_timeout_s: float = 10.0,
                 refusals_kept: int = 16, on_connected: Callable[[], None] | None = None):
        self._target = _Target.of(target_url)
        # ffmpeg's own "Successfully connected" now means only "reached the relay": this reports the server's connect.
        self.on_connected = on_connected
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.port: int | None = None
        self.refused = 0
        self.forwarded = 0
        self.refusals: deque[dict[str, Any]] = deque(maxlen=refusals_kept)
        self.last_upstream_error: str | None = None
        self._unlogged = 0
        self._logged_at = 0.0
        self._lock = threading.Lock()
        self._active: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    # Lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        """Listen on a free loopback port (returns once listening; raises OSError if it cannot)."""
        if self._thread is not None and self._thread.is_alive():
            return
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="key-relay", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise OSError("the key relay did not start listening")
        if failure:
            raise OSError(f"the key relay cannot listen: {failure[0]}")

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every relayed connection."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._thread = None

    def set_target(self, url: str) -> None:
        """A new ingest (another meeting): later connections go there, under a new placeholder."""
        with self._lock:
            self._target = _Target.of(url)

    @property
    def local_url(self) -> str:
        """What ffmpeg is given: it carries the placeholder, never the key."""
        if self.port is None:
            raise RuntimeError("the key relay is not started")
        with self._lock:
            return f"rtmp://127.0.0.1:{self.port}{self._target.local_path}"

    @property
    def placeholder(self) -> str:
        with self._lock:
            return self._target.placeholder.decode()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"port": self.port, "connections": len(self._active), "forwarded": self.forwarded,
                    "refused": self.refused, "refusals": list(self.refusals),
                    "last_upstream_error": self.last_upstream_error}

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            except OSError as exc:
                failure.append(exc)
                return
            finally:
                if self._server is not None:
                    self.port = self._server.sockets[0].getsockname()[1]
                ready.set()
            loop.run_forever()
            self._server.close()
            for task in list(self._active):
                task.cancel()
            if self._active:
                loop.run_until_complete(asyncio.gather(*self._active, return_exceptions=True))
        finally:
            loop.close()

    # Connections -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer, local = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
        with self._lock:
            target = self._target
            busy = len(self._active) >= self.max_connections
            if not busy:
                self._active.add(task)
        try:
            if busy:
                self._refuse(peer, None, f"more than {self.max_connections} connections at once")
                return
            uid = peer_uid(peer, local)  # a few KiB of /proc: cheap enough to read on the loop
            if uid != os.getuid():
                self._refuse(peer, uid, "not a process of the agent's user" if uid is not None else "peer socket not found")
                return
            await self._relay(reader, writer, target, peer)
        except asyncio.CancelledError:
            pass  # the relay is stopping; asyncio's stream callback logs a cancelled task as an error
        finally:
            with self._lock:
                self._active.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: _Target, peer: Any) -> None:
        context = ssl.create_default_context() if target.tls else None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port, ssl=context,
                                        server_hostname=target.host if context else None),
                self.connect_timeout_s)
        except OSError as exc:  # TimeoutError included
            error = f"cannot reach {target.host}:{target.port}: {str(exc) or 'timed out'}"
            with self._lock:
                repeated, self.last_upstream_error = error == self.last_upstream_error, error
            # ffmpeg retries every few seconds through an outage: one line when it starts, not one per retry.
            log.log(logging.DEBUG if repeated else logging.WARNING, "key relay: %s", error)
            return
        with self._lock:
            self.forwarded += 1
            self.last_upstream_error = None
        if self.on_connected is not None:
            self.on_connected()
        replacer = Replacer(target.placeholder, target.name)
        pumps = [asyncio.ensure_future(_pump(reader, up_writer, replacer)), asyncio.ensure_future(_pump(up_reader, writer, None))]
        try:
            # RTMP has no half-close: when either side ends, the session is over.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            up_writer.close()
        if not replacer.replaced:
            log.warning("key relay: a session from %s ended without presenting the stream name", peer)

    def _refuse(self, peer: Any, uid: int | None, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.refused += 1
            self.refusals.append({"at": time.time(), "peer": f"{peer[0]}:{peer[1]}", "uid": uid, "reason": reason})
            # A local user looping on the port must not flood the journal: one line per 10 s.
            if now - self._logged_at < _LOG_EVERY_S:
                self._unlogged += 1
                return
            unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        log.warning("key relay: refused a connection from %s:%s (uid %s): %s%s", peer[0], peer[1], uid, reason,
                    f" ({unlogged} more refused since the last line)" if unlogged else "")


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replacer: Replacer | None) -> None:
    try:
        while True:
            if replacer is not None and replacer.holding:
                try:
                    data = await asyncio.wait_for(reader.read(_READ), _HOLD_S)
                except TimeoutError:
                    writer.write(replacer.flush())
                    await writer.drain()
                    continue
            else:
                data = await reader.read(_READ)
            if not data:
                break
            writer.write(replacer.feed(data) if replacer else data)
            await writer.drain()
        if replacer:
            writer.write(replacer.flush())
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass


__all__ = ["KeyRelay", "Replacer", "peer_uid", "relayable"]
