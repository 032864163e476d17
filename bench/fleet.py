"""N simulated kiosks (default 10,000) through a real Mosquitto into a real `hall central run`.

Run: .venv/bin/python bench/fleet.py [--devices 10000] [--duration 90] [--workers 4]

Each kiosk has its own Ed25519 key, registered at central, and its OWN MQTT connection (its own client id
and its own last will, as a real kiosk: a will belongs to a connection, so kiosks cannot share one). One
process cannot drive 10,000 paho threads, so ``--workers`` processes each run a few thousand paho clients on
one selector loop (paho's loop_read/loop_write/loop_misc, no thread per client). Every kiosk publishes a
retained QoS 1 status every ``--interval`` s (30) with its first one at a random point of the first interval
(jitter, so they do not all arrive at once), and at the meeting start (``--burst-at`` s into the run) each
kiosk of a hall with a meeting (one hall in ten; two kiosks a hall) publishes ``--burst`` signed, chained
check-in records.

Measured, while that load runs:
- status ingest lag: a few probe kiosks in this process publish a status and poll GET /api/fleet/devices
  (filtered to that kiosk) until its last contact is at least the publish time: publish -> visible in the API;
- API latency of GET /api/fleet/devices (a mix of sorts, filters, searches and pages) and of the overview's
  calls (the fleet totals, GET /api/fleet/devices?size=1, and the active alerts, GET /api/alerts?state=active);
- offline -> alert: kiosks of halls with a meeting now have their TCP connection closed without DISCONNECT
  (as when a kiosk loses power: Mosquitto publishes the last will), then GET /api/alerts is polled until the
  meeting_kiosk_down alert for each is open. For the bench, central evaluates rules every second
  (HALL_CENTRAL_ALERT_INTERVAL_S=1, --alert-interval), the boot grace is off (HALL_CENTRAL_ALERT_BOOT_GRACE_S=0) and the rule's
  grace is set to --alert-grace s (5) through PUT /api/alerts/rules; in service it is 120 s, 15 s and 300 s;
- the check-in burst: records stored at central and how long the burst took to drain;
- central's and Mosquitto's resident memory (max) and CPU seconds used; how many kiosks central shows online.

Prints the figures, then ONE JSON line. The soft file-descriptor limit is raised to the hard one (and, where
allowed, both to --nofile) for this process, its workers and the broker, which inherits it. A paho client
holds three descriptors (its socket and a wake-up socket pair), so a worker drives at most a third of the
limit: use more --workers for more kiosks. Mosquitto needs one per kiosk: where the hard limit cannot be
raised (a container without CAP_SYS_RESOURCE), that limit is the fleet's ceiling on one broker.
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import os
import random
import resource
import selectors
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from contract import (  # noqa: E402
    GENESIS_HASH,
    DeviceTime,
    Proof,
    RecordBody,
    Status,
    Topics,
    device_id_from_public_key,
    encode_status,
    public_key_text,
    sign_record,
)

VERSIONS = ("0.9.1", "1.0.0", "1.0.1")
MEETING_EVERY = 10  # one hall in ten has a meeting
PER_HALL = 2
PROBES = 8
ALERT_INTERVAL_S = 1.0  # --alert-interval
QUERIES = (
    {}, {"sort": "queue_depth", "order": "desc"}, {"sort": "last_contact"}, {"state": "offline"},
    {"meeting_now": "true"}, {"severity": "critical"}, {"q": "thôn 0012"}, {"page": 20, "size": 200},
    {"sort": "hall", "order": "desc"}, {"version": "1.0.0", "sort": "temperature", "order": "desc"},
)


def key_of(seed: int, i: int) -> SigningKey:
    return SigningKey(random.Random(seed * 1_000_003 + i).randbytes(32))


def hall_of(i: int) -> int:
    return i // PER_HALL


def has_meeting(i: int) -> bool:
    return hall_of(i) % MEETING_EVERY == 0


def member_of(i: int, seq: int) -> str:
    return f"M{i}-{seq}"


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def status_of(device: str, rnd: random.Random, uptime: float) -> bytes:
    return encode_status(Status(
        device=device, state="online", at=iso(datetime.now(UTC)), version=rnd.choice(VERSIONS), uptime_s=uptime,
        queue_depth=rnd.choice((0, 0, 0, 1, 3)), bundle_version=1, boot_count=3, disk_free_bytes=rnd.randint(10**9, 2 * 10**10),
        temperature_c=round(rnd.uniform(40, 60), 1), clock_synced=True, memory_used_bytes=rnd.randint(10**8, 4 * 10**8),
    ))


# ---------------------------------------------------------------- central's side: seed, broker, service


def seed(data_dir: Path, n: int, seed_: int, meeting_start: datetime, burst: int) -> tuple[str, str]:
    """Register the kiosks, halls, cells, meetings and the members who check in; returns (viewer, admin) tokens."""
    from central import accounts, registry
    from central.store import open_store

    store = open_store(data_dir)
    try:
        with store.transaction():
            for h in range((n + PER_HALL - 1) // PER_HALL):
                registry.add_hall(store, f"H{h:05d}", f"Nhà văn hoá thôn {h:05d}")
                if h % MEETING_EVERY == 0:  # each meeting hall's own cell, so every kiosk's roster stays small
                    registry.add_cell(store, f"C{h:05d}")
                    registry.add_meeting(store, f"MT{h:05d}", cell=f"C{h:05d}", hall=f"H{h:05d}", title="Sinh hoạt chi bộ",
                                         starts=meeting_start, ends=meeting_start + timedelta(hours=2))
            for i in range(n):
                registry.add_device(store, public_key_text(key_of(seed_, i)), f"H{hall_of(i):05d}", position="cửa chính")
                if has_meeting(i):
                    for seq in range(1, burst + 1):
                        registry.add_member(store, member_of(i, seq), f"Đảng viên {i}-{seq}", f"C{hall_of(i):05d}")
        accounts.add_user(store, "viewer", "viewer", "viewer-pass-bench-1")
        accounts.add_user(store, "admin", "admin", "admin-pass-bench-1")
        return accounts.issue_token(store, "viewer", "bench")[1], accounts.issue_token(store, "admin", "bench")[1]
    finally:
        store.close()


def start_broker(workdir: Path) -> tuple[subprocess.Popen, int]:
    from hall.processes import mosquitto_config

    port = free_port()
    conf = mosquitto_config(workdir, port)
    conf.write_text(conf.read_text().replace("persistence true", "persistence false") + "max_connections -1\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


def start_central(data_dir: Path, mqtt_port: int, log: Path) -> tuple[subprocess.Popen, str]:
    http_port = free_port()
    env = {**os.environ, "HALL_CENTRAL_DATA_DIR": str(data_dir), "HALL_CENTRAL_MQTT_PORT": str(mqtt_port),
           "HALL_CENTRAL_HTTP_PORT": str(http_port), "HALL_CENTRAL_STAFF_TOKEN_ENABLED": "false",
           "HALL_CENTRAL_ALERT_INTERVAL_S": str(ALERT_INTERVAL_S), "HALL_CENTRAL_ALERT_BOOT_GRACE_S": "0",
           "HALL_CENTRAL_MQTT_CLIENT_ID": f"hall-central-bench-{os.getpid()}"}
    hall = Path(sys.executable).with_name("hall")
    proc = subprocess.Popen([str(hall), "central", "run", "--log-level", "WARNING"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hall central run exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("hall central run did not answer")


class ProcWatch(threading.Thread):
    """The peak resident memory and the CPU seconds of a process, from /proc, once a second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.rss_max, self.stop_ = pid, 0, threading.Event()
        self.cpu0 = self.cpu()

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def cpu(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    def run(self) -> None:
        while not self.stop_.wait(1.0):
            self.rss_max = max(self.rss_max, self.rss())


# ---------------------------------------------------------------- the kiosks (worker processes)


def worker(wid: int, indices: list[int], seed_: int, port: int, go, start, args: dict, out: mp.Queue) -> None:
    """Connect ``indices``' kiosks, say so on ``out``, wait for ``go``, then drive them on one selector loop from
    ``start`` for the duration; report the counts on ``out``."""
    raise_nofile(args["nofile"])
    topics, rnd = Topics(), random.Random(seed_ + wid)
    sel = selectors.DefaultSelector()
    clients: dict[int, mqtt.Client] = {}
    ids: dict[int, str] = {}
    connected: set[int] = set()
    ending = False
    counts = {"connect_failed": 0, "connected": 0, "statuses": 0, "records": 0, "puback": 0, "lost": 0}
    for i in indices:
        device = device_id_from_public_key(key_of(seed_, i).verify_key)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, clean_session=True)
        c.will_set(topics.status(device), encode_status(Status(device=device, state="offline")), qos=1, retain=True)
        c.max_inflight_messages_set(100)
        c.on_connect = lambda cl, ud, fl, rc, pr, i=i: (connected.add(i) if not rc.is_failure else None)
        c.on_publish = lambda *a: counts.__setitem__("puback", counts["puback"] + 1)
        c.on_disconnect = lambda *a, i=i: (connected.discard(i), counts.__setitem__("lost", counts["lost"] + (not ending)))
        try:
            c.connect("127.0.0.1", port, keepalive=120)
        except OSError:
            counts["connect_failed"] += 1
            continue
        clients[i], ids[i] = c, device
        sel.register(c.socket(), selectors.EVENT_READ, i)
        if len(clients) % 200 == 0:  # read CONNACKs as we go: the broker's replies must not pile up
            _pump(sel, clients, 0)
    deadline = time.time() + 60
    while len(connected) < len(clients) and time.time() < deadline:
        _pump(sel, clients, 0.05)
    out.put(("ready", wid, len(connected)))
    while not go.wait(0.05):
        _pump(sel, clients, 0.0)
    t0 = start.value
    end = t0 + args["duration"]
    interval = args["interval"]
    due = [(t0 + rnd.uniform(0, interval), i) for i in clients]
    heapq.heapify(due)
    burst_at, burst_done = t0 + args["burst_at"], False
    records = {i: _records(seed_, i, args["burst"], args["meeting_start"]) for i in clients if has_meeting(i)}
    last_misc = 0.0
    while time.time() < end:
        _pump(sel, clients, 0.05)
        now = time.time()
        while due and due[0][0] <= now:
            _, i = heapq.heappop(due)
            if i in connected:
                clients[i].publish(topics.status(ids[i]), status_of(ids[i], rnd, now - t0 + 86_400), qos=1, retain=True)
                counts["statuses"] += 1
            heapq.heappush(due, (now + interval * rnd.uniform(0.9, 1.1), i))
        if not burst_done and now >= burst_at:
            burst_done = True
            for i, wires in records.items():
                if i in connected:
                    for wire in wires:
                        clients[i].publish(topics.attendance(ids[i]), wire, qos=1)
                        counts["records"] += 1
        if now - last_misc > 1.0:
            last_misc = now
            for c in clients.values():
                c.loop_misc()
                if c.want_write():
                    c.loop_write()
    counts["connected"] = len(connected)
    ending = True
    for c in clients.values():
        c.disconnect()  # a clean end: no will, the retained status stays "online"
    out.put(("done", wid, counts))


def _pump(sel: selectors.BaseSelector, clients: dict[int, mqtt.Client], timeout: float) -> None:
    for key, _ in sel.select(timeout):
        c = clients[key.data]
        if c.loop_read() != mqtt.MQTT_ERR_SUCCESS:
            try:
                sel.unregister(key.fileobj)
            except (KeyError, ValueError):
                pass
    for c in clients.values() if timeout == 0 else ():
        if c.want_write():
            c.loop_write()


def _records(seed_: int, i: int, count: int, meeting_start: float) -> list[bytes]:
    key = key_of(seed_, i)
    device = device_id_from_public_key(key.verify_key)
    prev, out = GENESIS_HASH, []
    start = datetime.fromtimestamp(meeting_start, UTC)
    for seq in range(1, count + 1):
        wall = start + timedelta(seconds=seq)
        rec = sign_record(key, RecordBody(
            device=device, seq=seq, prev=prev, meeting=f"MT{hall_of(i):05d}", member=member_of(i, seq),
            proof=Proof(card_kind="member_card", face_distance=0.31, face_threshold=0.5),
            time=DeviceTime(wall=iso(wall), synced=True, boot_id=f"boot-{i}", monotonic=100.0 + seq)))
        prev = rec.hash
        out.append(rec.to_wire())
    return out


# ---------------------------------------------------------------- measurements in this process


class Probe:
    """A kiosk in this process, on paho's own thread: publishes on demand, can drop its connection uncleanly."""

    def __init__(self, seed_: int, i: int, port: int):
        self.device = device_id_from_public_key(key_of(seed_, i).verify_key)
        self.topics, self.rnd = Topics(), random.Random(i)
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device, clean_session=True)
        self.client.will_set(self.topics.status(self.device), encode_status(Status(device=self.device, state="offline")),
                             qos=1, retain=True)
        self.client.on_connect = lambda *a: self.ready.set()
        self.client.connect("127.0.0.1", port, keepalive=120)
        self.client.loop_start()

    def publish(self) -> float:
        t = time.time()
        self.client.publish(self.topics.status(self.device), status_of(self.device, self.rnd, 86_400.0), qos=1, retain=True)
        return t

    def drop(self) -> float:
        """Close the TCP connection without DISCONNECT: the broker publishes the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        t = time.time()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        return t


def ingest_lags(http: httpx.Client, probes: list[Probe], stop: threading.Event, lags: list[float], misses: list[str]) -> None:
    k = 0
    while not stop.is_set():
        probe = probes[k % len(probes)]
        k += 1
        sent = probe.publish()
        deadline = time.time() + 30
        while time.time() < deadline and not stop.is_set():
            items = http.get("/api/fleet/devices", params={"q": probe.device, "size": 1}).json()["items"]
            if items and items[0]["last_contact"] and parse_iso(items[0]["last_contact"]) >= sent - 0.002:
                lags.append((time.time() - sent) * 1000)
                break
            time.sleep(0.05)
        else:
            if not stop.is_set():
                misses.append(probe.device)
        stop.wait(1.0)


def api_load(http: httpx.Client, stop: threading.Event, lists: list[float], overview: list[float], errors: list[str]) -> None:
    k = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        r = http.get("/api/fleet/devices", params=QUERIES[k % len(QUERIES)])
        lists.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            errors.append(f"list {r.status_code}")
        if k % 2 == 0:
            t0 = time.perf_counter()
            a = http.get("/api/fleet/devices", params={"size": 1})
            b = http.get("/api/alerts", params={"state": "active", "limit": 50})
            overview.append((time.perf_counter() - t0) * 1000)
            if a.status_code != 200 or b.status_code != 200:
                errors.append(f"overview {a.status_code}/{b.status_code}")
        k += 1
        stop.wait(0.1)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=4, help="processes driving the kiosks")
    ap.add_argument("--duration", type=float, default=90.0, help="seconds of load after every kiosk is connected")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between a kiosk's statuses")
    ap.add_argument("--burst-at", type=float, default=35.0, help="seconds into the load when meetings start")
    ap.add_argument("--burst", type=int, default=5, help="check-in records per kiosk of a hall with a meeting")
    ap.add_argument("--offline", type=int, default=3, help="kiosks dropped uncleanly during a meeting")
    ap.add_argument("--alert-grace", type=float, default=5.0, help="meeting_kiosk_down's grace_s for the bench")
    ap.add_argument("--alert-interval", type=float, default=1.0, help="central's rule evaluation period (service: 15 s)")
    ap.add_argument("--nofile", type=int, default=65_536)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = ap.parse_args()
    global ALERT_INTERVAL_S
    ALERT_INTERVAL_S = args.alert_interval
    n, seed_ = args.devices, args.seed
    nofile = raise_nofile(args.nofile)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    data_dir = tmp / "central"
    meeting_start = datetime.now(UTC) + timedelta(minutes=1)
    t_seed = time.perf_counter()
    viewer, admin = seed(data_dir, n, seed_, meeting_start, args.burst)
    seed_s = time.perf_counter() - t_seed
    broker, port = start_broker(tmp / "broker")
    central, url = start_central(data_dir, port, tmp / "central.log")
    watch_c, watch_b = ProcWatch(central.pid), ProcWatch(broker.pid)
    watch_c.start()
    watch_b.start()
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {viewer}"}, timeout=30)
    result: dict = {"devices": n, "workers": args.workers, "nofile": nofile}
    try:
        r = httpx.put(f"{url}/api/alerts/rules", headers={"Authorization": f"Bearer {admin}"}, timeout=10,
                      json={"rules": {"meeting_kiosk_down": {"params": {"grace_s": args.alert_grace}}}})
        r.raise_for_status()
        # The kiosks to drop are the first kiosks of halls with a meeting, the probes the first of halls without one
        # (their statuses are the only ones sent on demand); the workers drive all the others.
        special = [i for i in range(n) if has_meeting(i)][: args.offline] + [i for i in range(n) if not has_meeting(i)][:PROBES]
        rest = [i for i in range(n) if i not in set(special)]
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        t_connect = time.time()
        shares = [rest[w::args.workers] for w in range(args.workers)]
        go, start = ctx.Event(), ctx.Value("d", 0.0)
        wargs = {"duration": args.duration, "interval": args.interval, "burst_at": args.burst_at, "burst": args.burst,
                 "meeting_start": meeting_start.timestamp(), "nofile": args.nofile}
        procs = [ctx.Process(target=worker, args=(w, shares[w], seed_, port, go, start, wargs, out), daemon=True)
                 for w in range(args.workers)]
        for p in procs:
            p.start()
        probes = [Probe(seed_, i, port) for i in special]
        victims = probes[: min(args.offline, len([i for i in special if has_meeting(i)]))]
        connected_workers = 0
        for _ in procs:
            kind, wid, count = out.get(timeout=max(120.0, n / 50))
            connected_workers += count
        connect_s = time.time() - t_connect
        for p in probes:
            p.ready.wait(10)
            p.publish()  # online before the load starts, so the time to the alert counts from the drop alone
        t0 = start.value = time.time() + 0.5
        go.set()
        result.update(connect_s=round(connect_s, 1), kiosks_connected=connected_workers + len(probes))
        print(f"{connected_workers + len(probes)}/{n} kiosks connected in {connect_s:.1f} s "
              f"({args.workers} worker processes + {len(probes)} in this one)", flush=True)
        while time.time() < t0:
            time.sleep(0.1)
        stop = threading.Event()
        lags, misses, lists, overview, errors = [], [], [], [], []
        threads = [threading.Thread(target=ingest_lags, args=(http, probes[len(victims):], stop, lags, misses), daemon=True),
                   threading.Thread(target=api_load, args=(http, stop, lists, overview, errors), daemon=True)]
        for t in threads:
            t.start()
        # After one full status round, drop the victims (in halls whose meeting starts within the hour).
        time.sleep(min(args.interval + 2, args.duration / 2))
        dropped = {v.device: v.drop() for v in victims}
        alert_s: dict[str, float] = {}
        deadline = time.time() + min(120.0, args.duration)
        while len(alert_s) < len(dropped) and time.time() < deadline:
            for a in http.get("/api/alerts", params={"state": "active", "limit": 1000}).json()["alerts"]:
                if a["rule"] == "meeting_kiosk_down" and a["device"] in dropped and a["device"] not in alert_s:
                    alert_s[a["device"]] = time.time() - dropped[a["device"]]
            time.sleep(0.2)
        while time.time() < t0 + args.duration:
            time.sleep(0.5)
        totals = http.get("/api/fleet/devices", params={"size": 1}).json()["totals"]
        stop.set()
        for t in threads:
            t.join(35)
        counts = {"statuses": 0, "records": 0, "puback": 0, "lost": 0, "connect_failed": 0, "connected": 0}
        for _ in procs:
            kind, wid, c = out.get(timeout=120)
            for key in counts:
                counts[key] += c[key]
        for p in procs:
            p.join(30)
        expected = counts["records"]
        drain_deadline = time.time() + 60
        stored = 0
        while time.time() < drain_deadline:
            with sqlite3.connect(f"file:{data_dir / 'central.db'}?mode=ro", uri=True) as db:
                stored = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            if stored >= expected:
                break
            time.sleep(0.5)
        with sqlite3.connect(f"file:{data_dir / 'central.db'}?mode=ro", uri=True) as db:
            last_at = db.execute("SELECT MAX(received_at) FROM records").fetchone()[0]
            rejections = db.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
        burst_drain_s = round(parse_iso(last_at) - (t0 + args.burst_at), 1) if last_at else None
        result.update(
            statuses_published=counts["statuses"], status_rate_per_s=round(counts["statuses"] / args.duration, 1),
            worker_connections_at_end=counts["connected"], connections_lost=counts["lost"],
            connect_failed=counts["connect_failed"],
            ingest_lag_samples=len(lags), ingest_lag_p50_ms=pct(lags, 0.5), ingest_lag_p95_ms=pct(lags, 0.95),
            ingest_lag_max_ms=pct(lags, 1.0), ingest_probe_timeouts=len(misses),
            list_requests=len(lists), list_p50_ms=pct(lists, 0.5), list_p95_ms=pct(lists, 0.95),
            overview_requests=len(overview), overview_p50_ms=pct(overview, 0.5), overview_p95_ms=pct(overview, 0.95),
            api_errors=len(errors), offline_dropped=len(dropped), offline_alerts=len(alert_s),
            offline_to_alert_s=sorted(round(v, 1) for v in alert_s.values()), alert_grace_s=args.alert_grace, alert_interval_s=args.alert_interval,
            records_sent=expected, records_stored=stored, burst_drain_s=burst_drain_s, rejections=rejections,
            central_rss_max_mb=round(watch_c.rss_max / 2**20, 1), central_cpu_s=round(watch_c.cpu() - watch_c.cpu0, 1),
            broker_rss_max_mb=round(watch_b.rss_max / 2**20, 1), broker_cpu_s=round(watch_b.cpu() - watch_b.cpu0, 1),
            load_s=args.duration, online_in_api=totals["by_state"].get("online"), seed_s=round(seed_s, 1),
        )
    finally:
        http.close()
        for proc in (central, broker):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"statuses: {result['statuses_published']} published ({result['status_rate_per_s']}/s); "
          f"central shows {result['online_in_api']} of {n} online at the end")
    print(f"status ingest lag (publish -> visible in /api/fleet/devices): p50 {result['ingest_lag_p50_ms']} ms, "
          f"p95 {result['ingest_lag_p95_ms']} ms, max {result['ingest_lag_max_ms']} ms over {result['ingest_lag_samples']} probes "
          f"({result['ingest_probe_timeouts']} not visible within 30 s)")
    print(f"GET /api/fleet/devices x{result['list_requests']}: p50 {result['list_p50_ms']} ms, p95 {result['list_p95_ms']} ms; "
          f"overview (totals + active alerts) x{result['overview_requests']}: p50 {result['overview_p50_ms']} ms, "
          f"p95 {result['overview_p95_ms']} ms; errors {result['api_errors']}")
    print(f"offline -> alert open (rule grace {args.alert_grace} s, rules every {args.alert_interval:g} s): {result['offline_to_alert_s']} s "
          f"for {result['offline_alerts']}/{result['offline_dropped']} kiosks dropped")
    print(f"check-in burst: {result['records_stored']}/{result['records_sent']} records stored, "
          f"last one {result['burst_drain_s']} s after the meeting start; {result['rejections']} rejections at central")
    print(f"central: RSS max {result['central_rss_max_mb']} MB, CPU {result['central_cpu_s']} s; "
          f"mosquitto: RSS max {result['broker_rss_max_mb']} MB, CPU {result['broker_cpu_s']} s (over {args.duration:.0f} s of load)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
