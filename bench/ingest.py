"""Central's ingest rate next to the raw Ed25519 verify rate it cannot beat.

Run: .venv/bin/python bench/ingest.py [--records 20000] [--devices 4] [--inflight N]

What is measured, in one run, over the same pre-generated records (signed and
chained with contract.sign_record, several devices, interleaved as they would
arrive; generation is not timed):
- raw: PyNaCl ``VerifyKey.verify`` of each record's signature over its canonical
  body bytes (bytes and keys prepared beforehand). No parsing, no storage: the
  ceiling for one core.
- cpu: the collector's batch path without MQTT — ``Collector``'s own batch code
  (parse, verify, chain check, clock placement, insert, one commit per batch with
  synchronous=FULL, then the signed acks built) over a real SQLite file.
- e2e: a private Mosquitto on a free port, a running Collector, the records
  published at QoS 1 by a separate process (one MQTT client per device), timed
  from the first publish until the ack naming each device's last record arrives.
  ``--inflight`` sets the broker's ``max_inflight_messages`` (default: Mosquitto's
  own, 20); the collector sends PUBACK only after the commit. (Measured here it
  does not change the figure: batches of several hundred form either way.)

Prints the figures, then ONE JSON line with records/s and the ratios cpu/raw, e2e/raw.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from central import keys, registry  # noqa: E402
from central.collector import Collector, process_batch  # noqa: E402
from central.settings import CentralSettings  # noqa: E402
from central.store import Store  # noqa: E402
from contract import (  # noqa: E402
    GENESIS_HASH,
    Ack,
    DeviceTime,
    Proof,
    RecordBody,
    Topics,
    canonical_bytes,
    decode_signed,
    device_id_from_public_key,
    public_key_text,
    sign_record,
    verify_key_from_text,
)
from contract.keys import b64d  # noqa: E402
from hall.processes import free_port, wait_port  # noqa: E402

STAFF_TOKEN = "bench-staff-token-0123456789"


def make_records(n: int, devices: int) -> tuple[list[SigningKey], list[tuple[str, bytes]], list]:
    """Chained, signed records with plausible synced clocks, interleaved across devices."""
    keys_ = [SigningKey.generate() for _ in range(devices)]
    ids = [device_id_from_public_key(k.verify_key) for k in keys_]
    prev = [GENESIS_HASH] * devices
    start = datetime.now(UTC) - timedelta(hours=2)
    topics = Topics()
    out: list[tuple[str, bytes]] = []
    records = []
    for i in range(n):
        d = i % devices
        seq = i // devices + 1
        wall = start + timedelta(seconds=seq * 0.5)
        body = RecordBody(
            device=ids[d], seq=seq, prev=prev[d], meeting="mt1", member=f"m{seq % 300}",
            proof=Proof(card_kind="member_card", face_distance=0.31, face_threshold=0.5),
            time=DeviceTime(wall=wall.isoformat(timespec="milliseconds").replace("+00:00", "Z"), synced=True,
                            boot_id=f"boot-{d}", monotonic=100.0 + seq * 0.5),
        )
        rec = sign_record(keys_[d], body)
        prev[d] = rec.hash
        records.append(rec)
        out.append((topics.attendance(ids[d]), rec.to_wire()))
    return keys_, out, records


def bench_raw(keys_: list[SigningKey], records: list) -> float:
    by_device = {device_id_from_public_key(k.verify_key): k.verify_key for k in keys_}
    prepared = [(by_device[r.device], canonical_bytes(r.body), b64d(r.sig)) for r in records]
    t0 = time.perf_counter()
    for vk, msg, sig in prepared:
        vk.verify(msg, sig)
    return len(prepared) / (time.perf_counter() - t0)


def _register(store: Store, keys_: list[SigningKey]) -> None:
    for k in keys_:
        registry.add_device(store, public_key_text(k), "H1")
    # what the records name, so each counts as attendance (central checks member, cell, meeting, hall, time)
    now = datetime.now(UTC)
    with store.transaction():
        for i in range(300):
            registry.add_member(store, f"m{i}", f"Member {i}", "C1")
        registry.add_meeting(store, "mt1", cell="C1", hall="H1", title="bench", starts=now - timedelta(hours=3),
                             ends=now + timedelta(days=2))


def bench_cpu(keys_: list[SigningKey], messages: list[tuple[str, bytes]], work: Path, batch: int) -> tuple[float, dict]:
    settings = CentralSettings(data_dir=work / "cpu", staff_token=STAFF_TOKEN)
    store = Store(settings.data_dir / "central.db")
    _register(store, keys_)
    collector = Collector(settings, store, key=keys.signing_key(settings.data_dir), box=keys.template_box(settings.data_dir))
    t0 = time.perf_counter()
    for i in range(0, len(messages), batch):
        acks = process_batch(collector.ingest, [(t, p, False) for t, p in messages[i:i + batch]])
        for device in acks:
            collector.signed_ack(device)
    rate = len(messages) / (time.perf_counter() - t0)
    stored = store.scalar("SELECT COUNT(*) FROM records")
    counts = dict(collector.ingest.counts)
    store.close()
    if stored != len(messages):
        raise SystemExit(f"cpu path stored {stored} of {len(messages)} records: {counts}")
    return rate, counts


def _publisher(port: int, per_device: list[list[tuple[str, bytes]]], go: mp.Event, done: mp.Queue) -> None:
    """One MQTT client per device, as kiosks are; all publish at once."""
    clients = []
    for i, msgs in enumerate(per_device):
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-kiosk-{i}")
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append((c, msgs))
    go.wait()
    t0 = time.perf_counter()

    def run(c: mqtt.Client, msgs: list[tuple[str, bytes]]) -> None:
        infos = [c.publish(t, p, qos=1) for t, p in msgs]
        for info in infos:
            info.wait_for_publish(120)

    threads = [threading.Thread(target=run, args=cm) for cm in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.put(time.perf_counter() - t0)
    for c, _ in clients:
        c.disconnect()
        c.loop_stop()


def bench_e2e(keys_: list[SigningKey], messages: list[tuple[str, bytes]], work: Path, inflight: int | None) -> tuple[float, float, dict]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker_dir = work / "broker"
    broker_dir.mkdir()
    port = free_port()
    conf = broker_dir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {broker_dir}/\n"
        f"log_dest file {broker_dir}/mosquitto.log\nmax_queued_messages 0\n"
        + (f"max_inflight_messages {inflight}\n" if inflight is not None else "")
    )
    broker = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=10)
        settings = CentralSettings(data_dir=work / "e2e", mqtt_port=port, staff_token=STAFF_TOKEN, bundle_check_s=5.0)
        store = Store(settings.data_dir / "central.db")
        _register(store, keys_)
        public = verify_key_from_text(keys.central_public_key(settings))
        topics = Topics(settings.topic_prefix)
        ids = [device_id_from_public_key(k.verify_key) for k in keys_]
        last = {d: len(messages) // len(ids) + (1 if i < len(messages) % len(ids) else 0) for i, d in enumerate(ids)}
        reached: dict[str, int] = {}
        all_acked = threading.Event()
        acked_at: list[float] = []

        def on_ack(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            ack = decode_signed(public, bytes(msg.payload), Ack)
            reached[ack.device] = max(reached.get(ack.device, 0), ack.seq)
            if not all_acked.is_set() and all(reached.get(d, 0) >= s for d, s in last.items()):
                acked_at.append(time.perf_counter())
                all_acked.set()

        subscribed = threading.Event()
        probe = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ack-probe")
        probe.on_message = on_ack
        probe.on_subscribe = lambda *_: subscribed.set()
        probe.on_connect = lambda c, *_: c.subscribe(f"{settings.topic_prefix}/+/ack", qos=1)
        probe.connect("127.0.0.1", port)
        probe.loop_start()
        subscribed.wait(5)

        collector = Collector(settings, store, key=keys.signing_key(settings.data_dir), box=keys.template_box(settings.data_dir))
        collector.start()
        deadline = time.monotonic() + 10
        while not collector.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # the SUBSCRIBE is sent from on_connect; let the SUBACK land

        per_device = [[m for m in messages if m[0] == topics.attendance(d)] for d in ids]
        ctx = mp.get_context("spawn")
        go, done = ctx.Event(), ctx.Queue()
        pub = ctx.Process(target=_publisher, args=(port, per_device, go, done))
        pub.start()
        time.sleep(2.0)  # the publisher process imports and connects before the clock starts
        t0 = time.perf_counter()
        go.set()
        if not all_acked.wait(600):
            raise SystemExit(f"not every record was acked: {reached} of {last}; {collector.stats()}")
        elapsed = acked_at[0] - t0
        publish_s = done.get(timeout=60)
        pub.join(10)
        stats = collector.stats()
        collector.stop()
        probe.disconnect()
        probe.loop_stop()
        stored = store.scalar("SELECT COUNT(*) FROM records")
        store.close()
        if stored != len(messages):
            raise SystemExit(f"e2e stored {stored} of {len(messages)} records: {stats}")
        return len(messages) / elapsed, len(messages) / publish_s, stats
    finally:
        broker.terminate()
        broker.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--batch", type=int, default=None, help="cpu path batch size (default: the collector's BATCH_MAX)")
    ap.add_argument("--inflight", type=int, default=None, help="broker max_inflight_messages (default: Mosquitto's 20)")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    from central import collector as collector_module

    batch = args.batch or collector_module.BATCH_MAX
    t0 = time.perf_counter()
    keys_, messages, records = make_records(args.records, args.devices)
    print(f"generated {len(messages)} signed records from {args.devices} devices in {time.perf_counter() - t0:.1f} s")

    raw = bench_raw(keys_, records)
    print(f"raw PyNaCl verify:          {raw:9.0f} records/s")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        cpu, counts = bench_cpu(keys_, messages, work, batch)
        print(f"cpu path (batch {batch}):     {cpu:9.0f} records/s  ({cpu / raw:.2f} x raw)  {counts}")
        result = {"records": len(messages), "devices": args.devices, "raw_verify_per_s": round(raw), "cpu_per_s": round(cpu),
                  "cpu_over_raw": round(cpu / raw, 3), "batch": batch}
        if not args.skip_e2e:
            e2e, publish_rate, stats = bench_e2e(keys_, messages, work, args.inflight)
            print(f"end to end via Mosquitto:   {e2e:9.0f} records/s  ({e2e / raw:.2f} x raw)  publisher alone {publish_rate:.0f}/s  {stats}")
            result.update(e2e_per_s=round(e2e), e2e_over_raw=round(e2e / raw, 3), publisher_per_s=round(publish_rate),
                          broker_inflight=args.inflight or 20)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
