"""`hall demo`: the whole system on one machine — broker, central, one simulated kiosk."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path

import click


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True,
              help="where the demo keeps its databases, keys and logs")
@click.option("--faces", type=click.Path(path_type=Path), default=None,
              help="the shared face photos (default: HALL_FACES_DIR or ../shared/faces)")
@click.option("--central-port", default=8800, show_default=True, help="central dashboard/API port (next free if taken)")
@click.option("--kiosk-port", default=8080, show_default=True, help="kiosk page port (next free if taken)")
@click.option("--mqtt-port", default=18830, show_default=True, help="Mosquitto port (next free if taken)")
@click.option("--control-port", default=8090, show_default=True, help="simulator control port (next free if taken)")
@click.option("--rtmp-port", default=19350, show_default=True, help="media server RTMP port (next free if taken)")
@click.option("--hls-port", default=8081, show_default=True, help="media server HLS port (next free if taken)")
@click.option("--no-stream", is_flag=True, help="do not run the media server and the kiosk's streamer")
@click.option("--keep", is_flag=True, help="keep the previous demo's data instead of starting fresh")
@click.option("--for", "run_for", type=float, default=None, help="stop by itself after this many seconds")
def demo(data_dir: Path, faces: Path | None, central_port: int, kiosk_port: int, mqtt_port: int, control_port: int,
         rtmp_port: int, hls_port: int, no_stream: bool, keep: bool, run_for: float | None) -> None:
    """Run Mosquitto, central and one simulated kiosk on loopback ports, until Ctrl-C."""
    from . import demo_data
    from .processes import Child, free_port, mosquitto_binary, mosquitto_config, wait_port

    faces = (faces or demo_data.faces_dir()).resolve()
    if not (faces / "obama" / "obama.jpg").is_file():
        click.echo(f"hall demo: the face photos are not in {faces}; set HALL_FACES_DIR or --faces", err=True)
        sys.exit(2)
    data_dir = data_dir.resolve()
    if data_dir.exists() and not keep:
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    mqtt_port, central_port = free_port(mqtt_port), free_port(central_port)
    kiosk_port, control_port = free_port(kiosk_port), free_port(control_port)
    rtmp_port, hls_port = free_port(rtmp_port), free_port(hls_port)
    stream = not no_stream and shutil.which("ffmpeg") is not None and Path("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists()
    hall_exe = str(Path(sys.executable).with_name("hall"))
    children: list[Child] = []
    rigs: list = []

    def shutdown(code: int = 0) -> None:
        # Once stopping, a second Ctrl-C or SIGTERM must not cut the stop short and leave processes
        # behind; Child.stop escalates to SIGKILL by itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left: list[str] = []
        for child in reversed(children):
            left += [f"{child.name}: {p}" for p in child.stop()]
        for r in rigs:
            r.stop()
        if left:
            click.echo("hall demo: could not stop: " + "; ".join(left), err=True)
            code = code or 1
        else:
            click.echo("hall demo: stopped")
        sys.exit(code)

    signal.signal(signal.SIGTERM, lambda *_: shutdown(0))
    try:
        click.echo("hall demo: starting Mosquitto …")
        conf = mosquitto_config(data_dir / "mosquitto", mqtt_port)
        children.append(Child("mosquitto", [mosquitto_binary(), "-c", str(conf)], log_path=data_dir / "mosquitto" / "stdout.log"))
        wait_port(mqtt_port, proc=children[-1])

        click.echo("hall demo: enrolling the demo cell at central (face templates from the photos) …")
        from central import accounts as central_accounts
        from central import keys as central_keys
        from central.settings import CentralSettings
        from central.store import open_store
        from edge_agent.identity import DeviceIdentity

        token = secrets.token_urlsafe(24)
        central_env = {
            "HALL_CENTRAL_DATA_DIR": str(data_dir / "central"), "HALL_CENTRAL_MQTT_PORT": str(mqtt_port),
            "HALL_CENTRAL_HTTP_PORT": str(central_port), "HALL_CENTRAL_STAFF_TOKEN": token,
            "HALL_CENTRAL_MEDIA_ENABLED": str(stream).lower(), "HALL_CENTRAL_MEDIA_RTMP_PORT": str(rtmp_port),
            "HALL_CENTRAL_MEDIA_HTTP_PORT": str(hls_port),
        }
        csettings = CentralSettings(data_dir=data_dir / "central", mqtt_port=mqtt_port, http_port=central_port)
        kiosk = DeviceIdentity(data_dir / "kiosk")
        store = open_store(csettings.data_dir)
        try:
            meeting_id = demo_data.seed_central(store, central_keys.template_box(csettings.data_dir), faces, [kiosk.public_key],
                                                media_dir=data_dir / "media")
            login_code = central_accounts.issue_login_link(store, ttl_s=3600)  # the banner's link: tokens stay out of URLs
        finally:
            store.close()
        central_key = central_keys.central_public_key(csettings)

        click.echo("hall demo: starting central …")
        children.append(Child("central", [hall_exe, "central", "run"], log_path=data_dir / "central.log", env=central_env))
        wait_port(central_port, proc=children[-1])

        from .sim_rig import SimRig

        rig = SimRig(stage_path=data_dir / "camera-stage.jpg", default_faces=demo_data.default_faces(faces))
        rig.start()
        rigs.append(rig)
        control = rig.serve_control(control_port)
        click.echo("hall demo: starting the kiosk (face models load in its worker) …")
        agent_env = {
            "HALL_AGENT_DATA_DIR": str(data_dir / "kiosk"), "HALL_AGENT_MQTT_PORT": str(mqtt_port),
            "HALL_AGENT_CENTRAL_PUBLIC_KEY": central_key, "HALL_AGENT_CARD_READER": rig.card_port,
            "HALL_AGENT_QR_SCANNER": rig.qr_port, "HALL_AGENT_CAMERA": f"still:{rig.stage_path}",
            "HALL_AGENT_MOCK_GPIO": "true", "HALL_AGENT_HTTP_PORT": str(kiosk_port), "HALL_AGENT_HALL": demo_data.HALL,
            "HALL_AGENT_HALL_NAME": demo_data.HALL_NAME,
        }
        if stream:
            from central.media import media_secret, stream_key

            # The kiosk's camera and microphone stand-in: the shared clip, looped, pushed with its stream key.
            key = stream_key(media_secret(csettings.data_dir), kiosk.device_id)
            agent_env |= {"HALL_AGENT_STREAM_SOURCE": f"file:{faces / 'scenes' / 'short_hamilton_clip.mp4'}",
                          "HALL_AGENT_STREAM_INGEST_URL": f"rtmp://127.0.0.1:{rtmp_port}/hall/{key}"}
        children.append(Child("kiosk", [hall_exe, "agent", "run"], log_path=data_dir / "kiosk.log", env=agent_env))
        wait_port(kiosk_port, timeout=90, proc=children[-1])
        (data_dir / "sim.json").write_text(json.dumps({"control": control}))
        Path("var/demo").mkdir(parents=True, exist_ok=True)
        if Path("var/demo").resolve() != data_dir:
            (Path("var/demo") / "sim.json").write_text(json.dumps({"control": control}))

        obama, alex = demo_data.MEMBERS[0], demo_data.MEMBERS[4]
        click.echo(f"""
Hall demo is running (Ctrl-C stops it).

  Kiosk page    http://127.0.0.1:{kiosk_port}/
  Central       http://127.0.0.1:{central_port}/login/once/{login_code}   (one-time link, 1 hour; another:
                HALL_CENTRAL_DATA_DIR={data_dir / 'central'} HALL_CENTRAL_HTTP_PORT={central_port} .venv/bin/hall central login-link)
  Attendance    http://127.0.0.1:{central_port}/attendance/cells/{demo_data.CELL}   (after logging in: the cell's year, six past
                months closed with excuses, an amendment and two early warnings; each meeting's sheet, the commune and province)
  API           curl -H 'Authorization: Bearer {token}' http://127.0.0.1:{central_port}/api/meetings/{meeting_id}/attendance
  MQTT broker   127.0.0.1:{mqtt_port}    logs: {data_dir}/*.log
  Central CLI   HALL_CENTRAL_DATA_DIR={data_dir / 'central'} .venv/bin/hall central …   (the demo's data)
  Media server  {f"rtmp://127.0.0.1:{rtmp_port}/hall (the kiosk streams the shared clip; recordings in {data_dir}/central/media)" if stream else "off"}

Simulate (in another terminal, from this folder). The kiosk checks liveness, so a still photo is refused:
  .venv/bin/hall sim tap --card {demo_data.LIVE_MEMBER.card} --face live   # {demo_data.LIVE_MEMBER.name}: the stage plays the shared clip → live face → checked in
  .venv/bin/hall sim tap --card {obama.card}                 # {obama.name}'s card before a photo of him → not a live person → refused
  .venv/bin/hall sim tap --card {demo_data.MEMBERS[1].card} --face live   # Biden's card, the live man's face → face does not match
  .venv/bin/hall sim tap --card {demo_data.UNKNOWN_CARD}                 # unknown card
  .venv/bin/hall sim tap --card {alex.card}                 # member of another cell
  .venv/bin/hall sim scan '{demo_data.MEMBERS[2].qr()}'   # a CCCD's QR on the serial scanner
  .venv/bin/hall sim garbage --hex 00ff05fbd44a0101   # broken frame on the reader line
Members: {", ".join(f"{m.name} ({m.card})" for m in [*demo_data.MEMBERS, demo_data.LIVE_MEMBER])}
Secretary override: secretary {demo_data.SECRETARY.name} (card {demo_data.SECRETARY.card}), chair {demo_data.CHAIR.name} (card {demo_data.CHAIR.card}), PIN {demo_data.DEMO_PIN}
  try it: a refused tap above → press "Thư ký xác nhận" on the kiosk page → .venv/bin/hall sim tap --card {demo_data.SECRETARY.card} → type {demo_data.DEMO_PIN} on the page's PIN pad
""", nl=True)
        sys.stdout.flush()
        deadline = time.monotonic() + run_for if run_for else None
        while deadline is None or time.monotonic() < deadline:
            for child in children:
                if not child.alive:
                    click.echo(f"hall demo: {child.name} exited ({child.popen.returncode}); last lines of {child.log_path}:\n{child.tail()}", err=True)
                    shutdown(1)
            time.sleep(0.5)
        shutdown(0)
    except KeyboardInterrupt:
        click.echo("\nhall demo: stopping …")
        shutdown(0)
    except Exception as exc:
        click.echo(f"hall demo: {exc}", err=True)
        for child in children:
            if not child.alive:
                click.echo(f"--- {child.name} ({child.log_path}):\n{child.tail()}", err=True)
        shutdown(1)
