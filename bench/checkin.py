"""Card tap → verdict latency with the real face pipeline, next to the naive pipeline, and RSS.

Run: .venv/bin/python bench/checkin.py [--n 60]
Needs the shared face photos (HALL_FACES_DIR, default ../shared/faces).

What is measured, in one run:
- agent: the kiosk's own path. A CardEvent enters CheckinService.handle (roster lookup, meeting,
  face verdict from the worker process, signed record committed to the SQLite outbox, screen
  update) and the time to the verdict is taken. The camera is a StillCamera stage showing the
  member's probe photo (a different photo from the enrolled one), set ~1 s before the tap, as a
  member steps up before tapping; the worker pre-encodes the face in front.
- agent_live: the kiosk's path with liveness on (as deployed): the stage plays the shared clip's
  close-up of a live man (edge_agent.face.sample_media), every member enrolled from its frame,
  the video playing on the stage all along (members stand in front of the camera, looking, before
  they tap; a member who has not will wait ~0.6-1 s for evidence of life). Also the liveness
  check's own cost per look (landmarks and evidence, from the worker's counters).
  The other runs use stills and so run with liveness off.
- agent_cold: the same with pre-encoding disabled (fresh_window_s=0): the encoding is computed
  after the tap — what a tap costs when the member was not in front of the camera beforehand.
- naive: face_recognition's textbook use on the same full-resolution frame per tap (HOG detection
  and encoding on the full frame, then the distance) — the baseline the pipeline must beat.
- tap_to_verdict_reader: the same as `agent`, but from the simulated PN532's card presentation
  through the real reader driver over a pseudo-terminal (adds the reader's poll interval).
- RSS: a real `hall agent run` process (offline, simulated camera) and its face worker, with the
  models loaded — measured in their own processes, since this script loads models itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from contract import Bundle, Meeting, Member, device_id_from_public_key, encode_signed, seal_members, seal_templates  # noqa: E402
from edge_agent.checkin import CheckinService  # noqa: E402
from edge_agent.display import Display  # noqa: E402
from edge_agent.face.pipeline import encode_photo, load_image, naive_encode  # noqa: E402
from edge_agent.face.sample_media import live_clip_segment, live_member_photo  # noqa: E402
from edge_agent.face.worker import FaceWorker  # noqa: E402
from edge_agent.identity import DeviceIdentity  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.roster import Roster  # noqa: E402
from hall import demo_data  # noqa: E402
from hardware.camera import show_face  # noqa: E402
from hardware.events import CardEvent  # noqa: E402

SETTLE_S = 1.0


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(pid: int) -> dict[str, float]:
    """RSS of a process and each of its descendants, by command name."""
    out: dict[str, float] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            name = Path(f"/proc/{p}/comm").read_text().strip()
            out[f"{name}[{p}]"] = round(rss_mb(p), 1)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def agent_process_rss(stage_photo: Path) -> dict[str, float]:
    """Start a real `hall agent run` (offline, simulated camera) and read its memory with models loaded."""
    from contract import public_key_text
    from hall.processes import Child, free_port, wait_port

    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage.jpg"
        show_face(stage, stage_photo)
        port = free_port()
        env = {"HALL_AGENT_DATA_DIR": str(Path(tmp) / "kiosk"), "HALL_AGENT_MQTT_PORT": str(free_port()),
               "HALL_AGENT_CENTRAL_PUBLIC_KEY": public_key_text(SigningKey.generate()),
               "HALL_AGENT_CAMERA": f"still:{stage}", "HALL_AGENT_MOCK_GPIO": "true", "HALL_AGENT_HTTP_PORT": str(port)}
        child = Child("agent", [str(Path(sys.executable).with_name("hall")), "agent", "run"], log_path=Path(tmp) / "agent.log", env=env)
        try:
            wait_port(port, timeout=90, proc=child)
            time.sleep(3.0)  # the worker looks and pre-encodes a few times
            return tree_rss_mb(child.popen.pid)
        finally:
            child.stop()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def build(work: Path, faces: Path, n: int, fresh_window_s: float, live: bool = False):
    """A kiosk with n members (the five demo people, repeated under distinct ids and cards), or
    with `live` n members all the live clip's man, liveness on."""
    central = SigningKey.generate()
    ident = DeviceIdentity(work)
    people = demo_data.MEMBERS[:4]
    templates = {p.id: encode_photo(faces / p.enrol) for p in people}
    if live:
        clip, member = live_clip_segment(faces, work), live_member_photo(faces, work)
        live_template = encode_photo(member)
    members, sealed, plan = [], {}, []
    for i in range(n):
        p = people[i % len(people)]
        mid, card = f"B{i:04d}", f"04{i:012X}"
        members.append(Member(id=mid, name=p.name, cell="C1", cards=[card]))
        sealed[mid] = [live_template if live else templates[p.id]]
        plan.append((card, clip if live else faces / p.probe))
    now = datetime.now(UTC)
    meeting = Meeting(id="BENCH", cell="C1", hall="H", title="bench", starts_at=(now - timedelta(minutes=5)).isoformat(),
                      ends_at=(now + timedelta(hours=2)).isoformat())
    bundle = Bundle(device=device_id_from_public_key(ident.signing_key.verify_key), hall="H", version=1,
                    issued_at=now.isoformat(), members_sealed=seal_members(ident.signing_key.verify_key, members), meetings=[meeting],
                    templates_sealed=seal_templates(ident.signing_key.verify_key, sealed))
    roster = Roster(data_dir=work, device_key=ident.signing_key, central_key=central.verify_key, storage_box=ident.storage_box)
    roster.receive(encode_signed(central, bundle))
    stage = work / "stage.jpg"
    show_face(stage, None)
    worker = FaceWorker(camera_source=f"still:{stage}", fresh_window_s=fresh_window_s, liveness=live)
    worker.start()
    outbox = Outbox(work / "outbox.sqlite3", signing_key=ident.signing_key)
    service = CheckinService(roster=roster, outbox=outbox, face=worker, display=Display(), verdict_hold_s=0.01)
    return service, worker, stage, plan


async def run_agent(service, stage, plan) -> tuple[list[float], dict]:
    latencies, outcomes = [], {}
    for card, photo in plan:
        if Path(photo).suffix != ".mp4" or latencies == []:  # the live man stays in front, as a queue of members would
            show_face(stage, photo)
        await asyncio.sleep(SETTLE_S)
        t0 = time.perf_counter()
        result = await service.handle(CardEvent(kind="member_card", value=card, source="bench"))
        latencies.append(time.perf_counter() - t0)
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
    return latencies, outcomes


def run_naive(plan, faces: Path) -> list[float]:
    import face_recognition
    import numpy as np

    templates = {p.probe: np.array(encode_photo(faces / p.enrol)) for p in demo_data.MEMBERS[:4]}
    latencies = []
    for _, photo in plan:
        frame = load_image(photo)
        t0 = time.perf_counter()
        encodings = naive_encode(frame)
        if encodings:
            face_recognition.face_distance([templates[str(Path(photo).relative_to(faces))]], encodings[0])
        latencies.append(time.perf_counter() - t0)
    return latencies


def run_reader(plan, work: Path, service, stage, n: int) -> list[float]:
    """Through the real PN532 driver and the simulated chip on a pseudo-terminal."""
    from hardware.pn532 import Pn532Reader
    from hardware.pn532_sim import SimulatedPn532
    from hardware.serial_ports import open_pty_pair, open_serial

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        fd, path = open_pty_pair()
        chip = SimulatedPn532(fd=fd)
        chip.start()
        done: asyncio.Queue = asyncio.Queue()

        def on_card(event):
            loop.call_soon_threadsafe(done.put_nowait, (time.perf_counter(), event))

        reader = Pn532Reader(port=open_serial(path), on_card=on_card)
        reader.start()
        out = []
        try:
            for card, photo in plan[:n]:
                show_face(stage, photo)
                await asyncio.sleep(SETTLE_S)
                t0 = time.perf_counter()
                chip.present_card(card, seconds=0.3)
                _, event = await asyncio.wait_for(done.get(), 5)
                await service.handle(event)
                out.append(time.perf_counter() - t0)
                await asyncio.sleep(0.4)  # card leaves the field
        finally:
            reader.stop()
            chip.stop()
        return out

    return asyncio.run(main())


def summary(values: list[float]) -> dict:
    return {"p50_ms": round(1000 * statistics.median(values), 1), "p95_ms": round(1000 * pct(values, 95), 1),
            "max_ms": round(1000 * max(values), 1), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="check-ins per pipeline (>= 50)")
    parser.add_argument("--reader-n", type=int, default=20, help="check-ins through the PN532 driver")
    args = parser.parse_args()
    faces = demo_data.faces_dir()
    if not (faces / "obama" / "obama.jpg").exists():
        sys.exit(f"bench: face photos not found in {faces} (set HALL_FACES_DIR)")

    with tempfile.TemporaryDirectory() as tmp:
        service, worker, stage, plan = build(Path(tmp) / "warm", faces, args.n, fresh_window_s=1.0)
        warm, outcomes = asyncio.run(run_agent(service, stage, plan))
        worker_stats = worker.stats()
        # the reader path needs fresh members (each check-in is once per meeting)
        service2, worker2, stage2, plan2 = build(Path(tmp) / "reader", faces, args.reader_n, fresh_window_s=1.0)
        worker.stop()
        reader = run_reader(plan2, Path(tmp), service2, stage2, args.reader_n)
        worker2.stop()
        service3, worker3, stage3, plan3 = build(Path(tmp) / "cold", faces, args.n, fresh_window_s=0.0)
        cold, cold_outcomes = asyncio.run(run_agent(service3, stage3, plan3))
        worker3.stop()
        service4, worker4, stage4, plan4 = build(Path(tmp) / "live", faces, args.n, fresh_window_s=1.0, live=True)
        live, live_outcomes = asyncio.run(run_agent(service4, stage4, plan4))
        live_stats = worker4.stats()
        worker4.stop()
    looks = live_stats.get("liveness_looks") or 0
    liveness_ms = round(live_stats.get("liveness_ms", 0.0) / looks, 2) if looks else None
    naive = run_naive(plan, faces)
    tree = agent_process_rss(faces / demo_data.MEMBERS[0].probe)
    rss_total = round(sum(tree.values()), 1)

    result = {
        "agent": summary(warm), "agent_outcomes": outcomes,
        "agent_live": summary(live), "agent_live_outcomes": live_outcomes,
        "liveness_ms_per_look": liveness_ms, "liveness_looks": looks,
        "agent_cold": summary(cold), "agent_cold_outcomes": cold_outcomes,
        "tap_to_verdict_reader": summary(reader),
        "naive": summary(naive),
        "speedup_p95_vs_naive": round(pct(naive, 95) / pct(warm, 95), 1),
        "speedup_p95_cold_vs_naive": round(pct(naive, 95) / pct(cold, 95), 1),
        "rss_mb": {**tree, "total": rss_total},
        "worker": {k: worker_stats.get(k) for k in ("encodings", "cache_hits", "looks") if k in worker_stats},
        "cpu": os.cpu_count(),
    }
    print(f"check-ins per pipeline: {args.n} (members' probe photos differ from the enrolled ones)")
    for key in ("agent", "agent_live", "agent_cold", "tap_to_verdict_reader", "naive"):
        s = result[key]
        print(f"  {key:24s} p50 {s['p50_ms']:7.1f} ms   p95 {s['p95_ms']:7.1f} ms   max {s['max_ms']:7.1f} ms   (n={s['n']})")
    print(f"  outcomes: agent {outcomes}, live {live_outcomes}, cold {cold_outcomes}")
    print(f"  liveness's own cost: {liveness_ms} ms per look of a face ({looks} looks)")
    print(f"  p95 speed-up vs naive: {result['speedup_p95_vs_naive']}x (pre-encoded), {result['speedup_p95_cold_vs_naive']}x (cold)")
    print(f"  RSS of a running `hall agent run` with models loaded: {tree} = {rss_total:.0f} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
