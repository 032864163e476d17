"""The fleet device list's API latency with N kiosks (default 10,000) in central's real store.

Run: .venv/bin/python bench/fleet_api.py [--devices 10000] [--requests 200]

The kiosks are registered through central/registry.py and report through central's real ingest
(central/ingest.py, so central/fleet.py's hook fills the fleet tables as in service): one hall per two
kiosks, a meeting now in one hall in ten, ~80 % online with varied queue depth, disk, temperature,
version and faults, ~10 % gone offline (their last will), ~7 % never seen, ~3 % revoked. Then
``GET /api/fleet/devices`` is called through the app (FastAPI TestClient, a viewer's API token) with a
mix of sorts, filters, text searches and pages, plus /metrics. Prints the figures, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from central import accounts, registry  # noqa: E402
from central.ingest import Ingest  # noqa: E402
from central.store import Store, open_store  # noqa: E402
from contract import Status, Topics, encode_status, public_key_text  # noqa: E402

VERSIONS = ("0.9.0", "0.9.1", "1.0.0", "1.0.1")


def seed(store: Store, n: int, *, rnd: random.Random | None = None) -> dict[str, list[str]]:
    """Register ``n`` kiosks and feed their statuses through the ingest; returns device ids by intended state."""
    rnd = rnd or random.Random(10)
    topics, ingest = Topics(), Ingest(store, Topics())
    now = datetime.now(UTC)
    by_state: dict[str, list[str]] = {"online": [], "offline": [], "never_seen": [], "revoked": []}
    halls = [f"H{i:05d}" for i in range((n + 1) // 2)]
    with store.transaction():
        registry.add_cell(store, "C1")
        for i, hall in enumerate(halls):
            registry.add_hall(store, hall, f"Nhà văn hoá thôn {i:05d}")
            if i % 10 == 0:
                registry.add_meeting(store, f"MT{i:05d}", cell="C1", hall=hall, title="Họp chi bộ",
                                     starts=now - timedelta(minutes=20), ends=now + timedelta(hours=1))
        for i in range(n):
            key = SigningKey(rnd.randbytes(32))
            device = registry.add_device(store, public_key_text(key), halls[i // 2])
            roll = rnd.random()
            state = "online" if roll < 0.80 else "offline" if roll < 0.90 else "never_seen" if roll < 0.97 else "revoked"
            by_state[state].append(device)
    with store.transaction(), ingest.batch():
        for state in ("online", "offline", "revoked"):
            for device in by_state[state]:
                status = Status(
                    device=device, state="online", version=rnd.choice(VERSIONS), uptime_s=rnd.uniform(10, 1e6),
                    queue_depth=rnd.choice((0, 0, 0, 1, 3, rnd.randint(0, 5000))), boot_count=rnd.randint(1, 50),
                    oldest_unsent_age_s=rnd.choice((None, rnd.uniform(0, 86400))), bundle_version=rnd.randint(1, 3),
                    disk_free_bytes=rnd.randint(10**8, 3 * 10**10), temperature_c=round(rnd.uniform(35, 85), 1),
                    clock_synced=rnd.random() > 0.05, memory_used_bytes=rnd.randint(10**8, 8 * 10**8),
                    faults=["camera not working"] if rnd.random() < 0.05 else [],
                )
                ingest.handle(topics.status(device), encode_status(status))
        for device in by_state["offline"]:
            ingest.handle(topics.status(device), encode_status(Status(device=device, state="offline")))
    for device in by_state["revoked"]:
        registry.revoke_device(store, device)
    return by_state


QUERIES = (
    {}, {"sort": "queue_depth", "order": "desc"}, {"sort": "last_contact"}, {"sort": "temperature", "order": "desc"},
    {"state": "offline"}, {"state": ["offline", "never_seen"], "sort": "hall"}, {"meeting_now": "true"},
    {"severity": "critical"}, {"has_fault": "true", "sort": "disk_free"}, {"version": "0.9.0", "sort": "version"},
    {"q": "thôn 0012"}, {"hall": "H00042"}, {"page": 40, "size": 200, "sort": "oldest_unsent_age", "order": "desc"},
    {"sort": "roster_behind", "order": "desc", "size": 200},
)


def measure(client, requests: int, headers: dict[str, str]) -> tuple[list[float], list[float]]:
    times, metric_times = [], []
    for i in range(requests):
        t0 = time.perf_counter()
        response = client.get("/api/fleet/devices", params=QUERIES[i % len(QUERIES)], headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
        if i % 10 == 0:
            t0 = time.perf_counter()
            assert client.get("/metrics", headers=headers).status_code == 200
            metric_times.append((time.perf_counter() - t0) * 1000)
    return times, metric_times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def main() -> None:
    from fastapi.testclient import TestClient

    from central.api import create_app

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp))
        t0 = time.perf_counter()
        by_state = seed(store, args.devices)
        seeded_s = time.perf_counter() - t0
        accounts.add_user(store, "viewer", "viewer", "viewer-pass-bench-1")
        token = accounts.issue_token(store, "viewer", "bench")[1]
        client = TestClient(create_app(store=store, staff_token=None))
        headers = {"Authorization": f"Bearer {token}"}
        measure(client, len(QUERIES), headers)  # warm up
        times, metric_times = measure(client, args.requests, headers)
        totals = client.get("/api/fleet/devices", headers=headers, params={"size": 1}).json()["totals"]
        store.close()
    result = {
        "devices": args.devices, "requests": args.requests, "seed_s": round(seeded_s, 1),
        "list_p50_ms": round(statistics.median(times), 1), "list_p95_ms": round(p95(times), 1), "list_max_ms": round(max(times), 1),
        "metrics_p50_ms": round(statistics.median(metric_times), 1), "metrics_p95_ms": round(p95(metric_times), 1),
        "by_state": totals["by_state"], "intended": {k: len(v) for k, v in by_state.items()},
    }
    print(f"seeded {args.devices} kiosks through registry + ingest in {seeded_s:.1f} s")
    print(f"GET /api/fleet/devices x{args.requests}: p50 {result['list_p50_ms']} ms, p95 {result['list_p95_ms']} ms, "
          f"max {result['list_max_ms']} ms")
    print(f"GET /metrics x{len(metric_times)}: p50 {result['metrics_p50_ms']} ms, p95 {result['metrics_p95_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
