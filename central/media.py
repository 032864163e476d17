"""Central's media server: nginx with the RTMP module, configured and run by this project.

- ``rtmp://HOST:RTMP_PORT/hall/<device>.<key>``: each hall's kiosk pushes here;
  every push is recorded (``record all``, in chunks of ``record_chunk_s``) under
  ``<data_dir>/media/recordings``, kept within a quota and a maximum age
  (``central/media_retention.py``), enforced periodically and whenever a recording ends.
- ``rtmp://HOST:RTMP_PORT/main/<device>.<key>``: the main room's encoder pushes
  here; nginx cuts it into HLS under ``<data_dir>/media/hls`` and serves it at
  ``http://HOST:HTTP_PORT/hls/<name>.m3u8`` for the kiosks' page.
- Each hall's push is also relayed into ``hall_hls`` and cut into HLS under
  ``<data_dir>/media/hls_hall/<device>/index.m3u8``; nginx does not serve it:
  staff watch it through central's API (``GET /api/media/hls/<device>/<file>``,
  staff login), since it shows a meeting's members and must not reach whoever
  can reach the media port.
- Both applications ask central's API before accepting a publisher
  (``on_publish``, see ``central/api/routes/media.py``): only an enrolled, not
  revoked device presenting its HMAC stream key may push, and into ``main`` only
  a device of the main room's hall (``main_hall``). The internal ``main_hls``
  application asks too: only the relay from ``main``, which presents the relay
  key (derived from the media secret) in its connect URL, may publish there.

Stream keys: ``key = base64url(HMAC-SHA256(media secret, device_id))`` without
padding; the stream name is ``<device_id>.<key>``. The media secret is a 0600
file in central's data directory, made on first use, like central's other keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path

from .errors import CentralError
from .keys import _load_or_create
from .media_retention import RecordingRetention

log = logging.getLogger(__name__)

MEDIA_KEY_FILE = "media.key"
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
KEY_SEP = "."
HLS_APP = "main_hls"  # internal: fed only by the relay from "main"
HALL_HLS_APP = "hall_hls"  # internal: fed only by the relay from "hall"; its HLS is for staff, through central's API
MAIN_HALL = "MAIN"  # devices of this hall may publish into "main"
RELAY_PARAM = "relay"


class MediaServerError(CentralError, RuntimeError):
    """nginx is missing, its configuration is refused, or it did not come up."""


def media_secret(data_dir: Path) -> bytes:
    """The HMAC secret of the stream keys (``<data_dir>/media.key``, 0600, made on first use)."""
    return _load_or_create(Path(data_dir) / MEDIA_KEY_FILE)


def stream_key(secret: bytes, device_id: str) -> str:
    """The stream name a device publishes under: ``<device_id>.<base64url HMAC>``."""
    if not device_id or KEY_SEP in device_id or "/" in device_id:
        raise ValueError(f"bad device id for a stream key: {device_id!r}")
    mac = hmac.new(secret, b"hall media v1:" + device_id.encode(), hashlib.sha256).digest()
    return f"{device_id}{KEY_SEP}{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def relay_key(secret: bytes) -> str:
    """What the main → main_hls relay presents (``?relay=`` in its tcUrl): no device can compute it."""
    mac = hmac.new(secret, b"hall media relay v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def check_stream_key(secret: bytes, name: str) -> str | None:
    """The device id if ``name`` carries that device's key, else None (constant-time compare)."""
    device_id, sep, _ = (name or "").partition(KEY_SEP)
    if not sep or not device_id:
        return None
    try:
        expected = stream_key(secret, device_id)
    except ValueError:
        return None
    return device_id if hmac.compare_digest(expected.encode(), name.encode()) else None


def _conf(text: str) -> str:
    """nginx string literal (paths from settings may hold spaces)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MediaServer:
    """A private nginx: its own config, pid, logs and temp paths under ``<data_dir>/media``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        on_publish_url: str,
        rtmp_port: int = 1935,
        http_port: int = 8081,
        host: str = "127.0.0.1",
        nginx: str = "nginx",
        rtmp_module: Path = RTMP_MODULE,
        hls_fragment_s: int = 2,
        hls_playlist_s: int = 12,
        quota_bytes: int | None = None,
        max_age_s: float | None = None,
        retention_interval_s: float = 60.0,
        record_chunk_s: int = 600,
        main_hall: str = MAIN_HALL,
    ):
        self.root = Path(data_dir).resolve() / "media"
        self.on_publish_url = on_publish_url
        # nginx reports each finished recording next to where it asks about publishers.
        self.on_record_done_url = on_publish_url.rpartition("/")[0] + "/on_record_done"
        self.record_chunk_s, self.retention_interval_s = record_chunk_s, retention_interval_s
        self.main_hall = main_hall
        self._data_dir = Path(data_dir)
        self.rtmp_port, self.http_port, self.host = rtmp_port, http_port, host
        self.nginx, self.rtmp_module = nginx, Path(rtmp_module)
        self.hls_fragment_s, self.hls_playlist_s = hls_fragment_s, hls_playlist_s
        self.recordings_dir, self.hls_dir = self.root / "recordings", self.root / "hls"
        self.hall_hls_dir = self.root / "hls_hall"
        self.conf_path, self.pid_path = self.root / "nginx.conf", self.root / "nginx.pid"
        self.error_log = self.root / "logs" / "error.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.retention = RecordingRetention(self.recordings_dir, quota_bytes=quota_bytes, max_age_s=max_age_s,
                                            open_files=self.open_files)

    def open_files(self) -> set[Path]:
        """Files nginx (master and workers) holds open now: recordings still being written."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return set()
        pids = {proc.pid}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == proc.pid:
                        pids.add(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue
        out: set[Path] = set()
        for pid in pids:
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    out.add(Path(os.readlink(fd)))
                except OSError:
                    continue
        return out

    @property
    def _relay_host(self) -> str:
        # The main → main_hls relay connects to nginx itself.
        return "127.0.0.1" if self.host in ("0.0.0.0", "127.0.0.1", "localhost") else self.host

    @property
    def urls(self) -> dict[str, str]:
        return {
            "hall_ingest": f"rtmp://{self.host}:{self.rtmp_port}/hall/",
            "main_ingest": f"rtmp://{self.host}:{self.rtmp_port}/main/",
            "hls": f"http://{self.host}:{self.http_port}/hls/",
            "health": f"http://{self.host}:{self.http_port}/health",
        }

    def hall_ingest_url(self, secret: bytes, device_id: str) -> str:
        return self.urls["hall_ingest"] + stream_key(secret, device_id)

    def main_hls_url(self, publisher_name: str) -> str:
        return self.urls["hls"] + publisher_name + ".m3u8"

    def config_text(self) -> str:
        user = "user root root;\n" if os.geteuid() == 0 else ""  # as root, workers must still write our dirs
        tmp = self.root / "tmp"
        return f"""# Written by central/media.py; edits are overwritten at start.
load_module {_conf(str(self.rtmp_module))};
{user}worker_processes 1;
pid {_conf(str(self.pid_path))};
error_log {_conf(str(self.error_log))} info;
events {{ worker_connections 512; }}

rtmp {{
    server {{
        listen {self.host}:{self.rtmp_port};
        chunk_size 4096;
        application hall {{
            # Only enrolled devices with their HMAC stream key may publish (central's API decides).
            on_publish {self.on_publish_url};
            notify_method post;
            live on;
            allow play 127.0.0.1;
            deny play all;
            record all;
            record_path {_conf(str(self.recordings_dir))};
            record_unique on;
            # Chunks: the retention can delete the finished parts of a push that lasts for hours.
            record_interval {self.record_chunk_s}s;
            on_record_done {self.on_record_done_url};
            # Relayed (under the renamed device id, as for main) into hall_hls for staff's live view.
            {self._relay_push(HALL_HLS_APP)}
        }}
        application main {{
            on_publish {self.on_publish_url};
            notify_method post;
            live on;
            deny play all;
            # on_publish renames the stream to the device id; the relay carries that name,
            # so the HLS files served to kiosks never show the publisher's key. The relay key in
            # its URL reaches on_publish as the tcUrl: main_hls accepts no other publisher.
            {self._relay_push(HLS_APP)}
        }}
{self._hls_application(HLS_APP, self.hls_dir)}
{self._hls_application(HALL_HLS_APP, self.hall_hls_dir, nested=True)}
    }}
}}

http {{
    access_log {_conf(str(self.root / 'logs' / 'access.log'))};
    client_body_temp_path {_conf(str(tmp / 'body'))};
    proxy_temp_path {_conf(str(tmp / 'proxy'))};
    fastcgi_temp_path {_conf(str(tmp / 'fastcgi'))};
    uwsgi_temp_path {_conf(str(tmp / 'uwsgi'))};
    scgi_temp_path {_conf(str(tmp / 'scgi'))};
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
        text/plain txt;
    }}
    server {{
        listen {self.host}:{self.http_port};
        location /hls/ {{
            alias {_conf(str(self.hls_dir) + '/')};
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}
        location = /health {{ return 200 "ok\\n"; }}
        location / {{ return 404; }}
    }}
}}
"""

    def _relay_push(self, app: str) -> str:
        """The push into an internal HLS application, with the relay key it alone accepts (on_publish)."""
        return f"push rtmp://{self._relay_host}:{self.rtmp_port}/{app}?{RELAY_PARAM}={relay_key(media_secret(self._data_dir))};"

    def _hls_application(self, app: str, path: Path, *, nested: bool = False) -> str:
        """An internal application that only central's relay may publish into and nobody plays: it cuts HLS
        into ``path`` (``nested``: one folder per stream) for central to serve."""
        return f"""        application {app} {{
            on_publish {self.on_publish_url};
            notify_method post;
            live on;
            allow publish {self._relay_host};
            deny publish all;
            deny play all;
            hls on;
            hls_path {_conf(str(path))};{chr(10) + "            hls_nested on;" if nested else ""}
            hls_fragment {self.hls_fragment_s}s;
            hls_playlist_length {self.hls_playlist_s}s;
            hls_cleanup on;
        }}"""

    def write_config(self) -> Path:
        # Recordings are of members' meetings, and the config holds the relay key: ours alone
        # (nginx runs as this user, and its files are made 0600 by the umask it is started with).
        for d in (self.root, self.recordings_dir, self.hls_dir, self.hall_hls_dir, self.error_log.parent, self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(self.config_text())
        return self.conf_path

    def _argv(self, *extra: str) -> list[str]:
        return [self.nginx, "-p", str(self.root), "-e", str(self.error_log), "-c", str(self.conf_path), *extra]

    def check(self) -> None:
        if shutil.which(self.nginx) is None:
            raise MediaServerError(f"{self.nginx} not found: apt-get install nginx libnginx-mod-rtmp")
        if not self.rtmp_module.is_file():
            raise MediaServerError(f"{self.rtmp_module} missing: apt-get install libnginx-mod-rtmp")
        self.write_config()
        test = subprocess.run(self._argv("-t"), capture_output=True, text=True, timeout=15)
        if test.returncode != 0:
            raise MediaServerError(f"nginx refused {self.conf_path}: {test.stderr.strip()}")

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, test it, run nginx in the foreground of a new session, wait for both ports."""
        if self.running:
            return
        self.check()
        self.retention.enforce()
        self._proc = subprocess.Popen(self._argv("-g", "daemon off;"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True, umask=0o077)
        deadline = time.monotonic() + timeout
        pending = {self.rtmp_port, self.http_port}
        while pending:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode("utf-8", "replace") if self._proc.stderr else ""
                raise MediaServerError(f"nginx exited with code {self._proc.returncode}: {err.strip() or self.last_errors()}")
            for port in list(pending):
                try:
                    with socket.create_connection((self.host, port), timeout=0.2):
                        pending.discard(port)
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                self.stop()
                raise MediaServerError(f"nginx did not listen on {sorted(pending)} within {timeout}s: {self.last_errors()}")
            if pending:
                time.sleep(0.05)
        self.retention.start(self.retention_interval_s)
        log.info("media server up: %s", self.urls)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def stop(self, timeout: float = 5.0, *, kill: bool = False) -> None:
        """SIGQUIT (graceful: finishes recordings) → wait → SIGKILL the group; ``kill=True`` simulates a crash."""
        self.retention.stop()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGQUIT)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        if kill:
            # A killed master leaves its worker in the group only if killpg missed it; and its pid file.
            self.pid_path.unlink(missing_ok=True)
        self._proc = None

    def last_errors(self, lines: int = 10) -> str:
        try:
            with self.error_log.open(encoding="utf-8", errors="replace") as f:
                return " | ".join(line.strip() for line in deque(f, maxlen=lines))
        except OSError:
            return "no error log"

    def recordings(self) -> list[Path]:
        return sorted(self.recordings_dir.glob("*.flv"))
