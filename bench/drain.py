"""Drain a backlog after an outage: records/s from the kiosk's outbox to central, next to the raw
paho QoS 1 publish rate on the same broker, in the same run.

Run: .venv/bin/python bench/drain.py [--records 100000]

- raw (pipelined): one paho client publishing the same number of messages of a record's size at QoS 1 to a
  private Mosquitto and waiting for every PUBACK — the ceiling of one MQTT client in Python;
  raw (one by one): each publish waits for its PUBACK before the next (the ~4,000/s figure).
- drain: the agent's Uplink sending a backlog of signed, chained records from a real SQLite
  outbox to a real `hall central run` process (verify, chain-check, store with synchronous=FULL,
  signed ack), until central's acks have emptied the outbox. The backlog is built first with
  Outbox.append; only the build relaxes fsync (synchronous=OFF) to save minutes, the drain runs
  with the production setting.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from contract import DeviceTime, Proof, Status, Topics  # noqa: E402
from edge_agent.identity import DeviceIdentity  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.settings import AgentSettings  # noqa: E402
from edge_agent.uplink import Uplink  # noqa: E402
from hall.processes import Child, free_port, mosquitto_binary, mosquitto_config, wait_port  # noqa: E402

PROOF = Proof(card_kind="member_card", face_distance=0.3123, face_threshold=0.5)


def raw_publish_rate(port: int, n: int, size: int) -> float:
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="raw-bench")
    done = threading.Event()
    acked = [0]

    def on_publish(c, userdata, mid, reason_code, properties):
        acked[0] += 1
        if acked[0] == n:
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = b"x" * size
    t0 = time.perf_counter()
    for _ in range(n):
        client.publish("bench/raw", payload, qos=1)
    done.wait(600)
    elapsed = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return n / elapsed


def raw_publish_rate_one_by_one(port: int, n: int, size: int) -> float:
    """Each publish waits for its PUBACK: the rate a sender gets without pipelining."""
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="raw-bench-sync")
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = b"x" * size
    t0 = time.perf_counter()
    for _ in range(n):
        client.publish("bench/raw", payload, qos=1).wait_for_publish(10)
    elapsed = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return n / elapsed


def build_backlog(outbox: Outbox, n: int) -> float:
    t0 = time.perf_counter()
    outbox._conn.execute("PRAGMA synchronous=OFF")  # bench set-up only; see the module docstring
    for i in range(n):
        outbox.append(meeting=f"MT{i // 500}", member=f"M{i % 500:04d}", proof=PROOF,
                      time_reading=DeviceTime(wall="2026-11-25T08:00:00.000Z", synced=True, boot_id="bench", monotonic=float(i)))
    outbox._conn.execute("PRAGMA synchronous=FULL")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=AgentSettings.model_fields["send_window"].default, help="records in flight (HALL_AGENT_SEND_WINDOW)")
    args = parser.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port, http_port = free_port(), free_port()
        broker = Child("mosquitto", [mosquitto_binary(), "-c", str(mosquitto_config(work / "broker", port))], log_path=work / "broker.log")
        wait_port(port)
        central = None
        try:
            ident = DeviceIdentity(work / "kiosk")
            outbox = Outbox(work / "kiosk" / "outbox.sqlite3", signing_key=ident.signing_key)
            print(f"building a backlog of {n} records …", flush=True)
            build_s = build_backlog(outbox, n)
            size = len(outbox.after(0, 1)[0].payload)

            raw = raw_publish_rate(port, min(n, 50_000), size)
            raw_sync = raw_publish_rate_one_by_one(port, min(n, 10_000), size)
            print(f"raw paho QoS 1: {raw:,.0f} msg/s pipelined, {raw_sync:,.0f} msg/s one PUBACK at a time "
                  f"({size}-byte messages)", flush=True)

            from central import keys, registry
            from central.settings import CentralSettings
            from central.store import open_store

            store = open_store(work / "central")
            registry.add_device(store, ident.public_key, "H-BENCH")
            with store.transaction():  # what the records name, so each counts as attendance
                for i in range(500):
                    registry.add_member(store, f"M{i:04d}", f"Member {i}", "C-BENCH")
                for m in range(args.records // 500 + 1):
                    registry.add_meeting(store, f"MT{m}", cell="C-BENCH", hall="H-BENCH", title="bench",
                                         starts="2026-11-25T07:00:00Z", ends="2026-11-25T10:00:00Z")
            store.close()
            central_key = keys.central_public_key(CentralSettings(data_dir=work / "central"))
            env = {"HALL_CENTRAL_DATA_DIR": str(work / "central"), "HALL_CENTRAL_MQTT_PORT": str(port),
                   "HALL_CENTRAL_HTTP_PORT": str(http_port), "HALL_CENTRAL_STAFF_TOKEN": secrets.token_urlsafe(24)}
            central = Child("central", [str(Path(sys.executable).with_name("hall")), "central", "run"], log_path=work / "central.log", env=env)
            wait_port(http_port, proc=central)
            time.sleep(1.0)  # central subscribed

            from contract import verify_key_from_text

            uplink = Uplink(outbox=outbox, device_id=ident.device_id, central_key=verify_key_from_text(central_key),
                            host="127.0.0.1", port=port, topics=Topics(),
                            status=lambda: Status(device=ident.device_id, state="online", queue_depth=outbox.depth()),
                            on_bundle=lambda payload: None, window=args.window, status_interval_s=3600)
            t0 = time.perf_counter()
            uplink.start()
            while outbox.depth() > 0:
                if not central.alive:
                    raise SystemExit(f"central died:\n{central.tail()}")
                time.sleep(0.05)
            drain_s = time.perf_counter() - t0
            uplink.stop()
        finally:
            if central:
                central.stop()
            broker.stop()

    rate = n / drain_s
    per_30_days = 5 * 400  # a weekly meeting of up to a few hundred members: ~5 meetings in 30 days
    result = {
        "records": n, "record_bytes": size, "backlog_build_s": round(build_s, 1),
        "drain_s": round(drain_s, 2), "drain_per_s": round(rate), "raw_paho_qos1_per_s": round(raw),
        "ratio_vs_raw": round(rate / raw, 2), "raw_paho_qos1_one_by_one_per_s": round(raw_sync),
        "ratio_vs_raw_one_by_one": round(rate / raw_sync, 2), "thirty_day_backlog_records": per_30_days,
        "thirty_day_backlog_drain_s": round(per_30_days / rate, 2),
    }
    print(f"drained {n:,} records in {drain_s:.1f} s: {rate:,.0f} records/s = {rate / raw:.2f}x raw pipelined paho QoS 1 "
          f"({raw:,.0f}/s), {rate / raw_sync:.2f}x one PUBACK at a time ({raw_sync:,.0f}/s)")
    print(f"a 30-day backlog (~{per_30_days:,} records) drains in {per_30_days / rate:.1f} s here")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
