"""The stream key stays out of ffmpeg's argv: the loopback key relay, with real ffmpeg, nginx-rtmp and sockets."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from edge_agent.streaming import Profile, Streamer, lavfi_pattern
from edge_agent.streaming.key_relay import KeyRelay, Replacer
from tests.conftest import require
from tests.stream import wait_until

SMALL = Profile(width=320, height=180, fps=10, video_kbps=200, audio_kbps=32)


def _cmdlines_holding(secret: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if secret.encode() in argv:
            program = argv.partition(b"\0")[0].decode("utf-8", "replace")
            found.append(f"pid {proc.name} ({program})")
    return found


def test_the_push_goes_live_and_no_process_shows_the_stream_key(central, tmp_path):
    url = central.ingest("hall")
    key = url.rpartition("/")[2]
    s = Streamer(source=lavfi_pattern(size="320x180", fps=10), ingest_url=url, recording_dir=tmp_path / "rec",
                 quota_bytes=50_000_000, profile=SMALL, segment_s=2, recovery_wait_s=1)
    s.start()
    try:
        wait_until(lambda: s.state()["state"] == "live", 30, "the push to go live",
                   on_timeout=lambda: (s.state(), central.media.last_errors(), central.rejections()))
        assert s.pid is not None
        assert _cmdlines_holding(key) == [], "the stream key is readable in a command line"
        assert central.rejections() == []
        st = s.state()
        assert st["key_relay"]["forwarded"] >= 1 and st["key_relay"]["refused"] == 0
        assert key not in str(st) and key.partition(".")[2] not in str(st)
    finally:
        s.stop()
    # nginx recorded the push under the device id: central saw the real key, not the placeholder.
    central.media.stop()
    assert [f.name.startswith(central.device.id + "-") for f in central.media.recordings()] == [True]


class Upstream:
    """A plain TCP server that keeps what each connection sends and answers 'hello'."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytearray] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            buf = bytearray()
            with self._lock:
                self.received.append(buf)
            threading.Thread(target=self._read, args=(conn, buf), daemon=True).start()

    def _read(self, conn, buf):
        with conn:
            conn.sendall(b"hello")
            while data := conn.recv(4096):
                with self._lock:
                    buf += data

    def got(self) -> list[bytes]:
        with self._lock:
            return [bytes(b) for b in self.received]

    def close(self):
        self.sock.close()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


KEY = "KIOSK1.s3cretHMACvalue-_xyz"

CLIENT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
data = b""
try:
    s.sendall(b"publish " + sys.argv[2].encode())
    while len(data) < 5 and (chunk := s.recv(4096)):  # the upstream's greeting, or the relay's close
        data += chunk
except (ConnectionResetError, BrokenPipeError):
    data += b"(reset)"
print(repr(data))
"""


SYSTEM_PYTHON = "/usr/bin/python3"  # one that user nobody may run (the venv's may sit under /root)


def _client(port: int, payload: str, *as_user: str) -> str:
    out = subprocess.run([*as_user, SYSTEM_PYTHON, "-c", CLIENT, str(port), payload], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_another_user_is_refused_and_our_own_user_is_forwarded(upstream):
    require("root, setpriv and the system python", os.getuid() == 0 and shutil.which("setpriv") is not None
            and os.access(SYSTEM_PYTHON, os.X_OK), f"needed to run a client as user nobody through {SYSTEM_PYTHON}")
    relay = KeyRelay(f"rtmp://127.0.0.1:{upstream.port}/hall/{KEY}")
    relay.start()
    try:
        placeholder = relay.placeholder
        assert len(placeholder) == len(KEY) and placeholder != KEY
        assert relay.local_url.endswith("/hall/" + placeholder)

        answer = _client(relay.port, placeholder, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
        assert answer in ("b''", "b'(reset)'"), "a client of another user got an answer through the relay"
        st = relay.state()
        assert st["refused"] == 1 and st["forwarded"] == 0 and upstream.got() == []
        assert st["refusals"][0]["uid"] == 65534 and "agent's user" in st["refusals"][0]["reason"]

        answer = _client(relay.port, placeholder)
        assert answer == "b'hello'"
        wait_until(lambda: upstream.got() == [b"publish " + KEY.encode()], 10, "the key at the upstream",
                   on_timeout=upstream.got)
        assert relay.state()["forwarded"] == 1
    finally:
        relay.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=2).recv(1)


def test_a_placeholder_split_across_reads_is_still_replaced(upstream):
    relay = KeyRelay(f"rtmp://127.0.0.1:{upstream.port}/hall/{KEY}")
    relay.start()
    try:
        placeholder = relay.placeholder.encode()
        # 2 MB of placeholders 28 bytes apart: of the relay's reads (64 KiB at most), nearly every one ends
        # inside a placeholder, wherever the kernel happens to cut them.
        unit = b"-" + placeholder
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as c:
            assert c.recv(5) == b"hello"
            c.sendall(unit * 75_000)
            want = (b"-" + KEY.encode()) * 75_000
            wait_until(lambda: len(upstream.got()[0]) >= len(want), 20, "everything at the upstream",
                       on_timeout=lambda: len(upstream.got()[0]))
            got = upstream.got()[0]
            assert placeholder not in got and got == want

            # A message that ends like the start of the placeholder is not held back waiting for more.
            c.sendall(b"publish live" + placeholder[:3])
            wait_until(lambda: upstream.got()[0].endswith(b"publish live" + placeholder[:3]), 10, "the message's end",
                       on_timeout=lambda: upstream.got()[0][-40:])
    finally:
        relay.stop()


def test_replacer_finds_the_placeholder_at_every_split_point():
    old, new = b"abcabd", b"XYZXYZ"
    stream = b"--abcab" + old + b"ab" + old + b"abcab"
    want = stream.replace(old, new)
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            r = Replacer(old, new)
            got = r.feed(stream[:i]) + r.feed(stream[i:j]) + r.feed(stream[j:]) + r.flush()
            assert got == want, (i, j)


def test_rtmps_ingest_is_reached_over_tls_with_the_key_inside(tmp_path, monkeypatch):
    # A TLS server for "localhost" whose self-signed certificate is made the trusted store.
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key_file), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hello")
            while data := tls.recv(4096):
                got.extend(data)

    threading.Thread(target=serve, daemon=True).start()
    relay = KeyRelay(f"rtmps://localhost:{listener.getsockname()[1]}/hall/{KEY}")
    relay.start()
    try:
        assert relay.local_url.startswith(f"rtmp://127.0.0.1:{relay.port}/hall/")
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as c:
            assert c.recv(5) == b"hello"
            c.sendall(b"publish " + relay.placeholder.encode())
            wait_until(lambda: bytes(got) == b"publish " + KEY.encode(), 10, "the key over TLS", on_timeout=lambda: bytes(got))
    finally:
        relay.stop()
        listener.close()
