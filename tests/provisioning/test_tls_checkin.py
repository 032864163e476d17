"""An enrolled kiosk's records reach central over the mutually authenticated TLS broker:
the kiosk's uplink with its enrolment certificate, central's collector with its own."""

from __future__ import annotations

import time

from central import keys
from central.collector import Collector
from central.settings import CentralSettings
from contract import DeviceTime, Proof, Status, Topics, verify_key_from_text
from edge_agent.identity import DeviceIdentity
from edge_agent.outbox import Outbox
from edge_agent.uplink import Uplink
from provisioning.enrol import load_agent_settings

from . import Rig, wait_for


def test_enrolled_kiosk_checks_in_through_the_tls_broker(tmp_path):
    rig = Rig(tmp_path).start()
    collector = uplink = None
    try:
        result = rig.enrol("kiosk")
        settings = load_agent_settings(result.data_dir)
        assert settings.mqtt_tls_cert and settings.mqtt_port == rig.broker.port

        pki = rig.pki
        csettings = CentralSettings(data_dir=rig.data_dir, mqtt_port=rig.broker.port, mqtt_tls_ca=pki.ca_cert_path,
                                    mqtt_tls_cert=pki.central_cert_path, mqtt_tls_key=pki.central_key_path)
        collector = Collector(csettings, rig.store, key=keys.signing_key(rig.data_dir), box=keys.template_box(rig.data_dir))
        collector.start()

        ident = DeviceIdentity(result.data_dir)
        assert ident.device_id == result.device
        outbox = Outbox(result.data_dir / "outbox.sqlite3", signing_key=ident.signing_key)
        record = outbox.append(meeting="MT", member="M1", proof=Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5),
                               time_reading=DeviceTime(wall="2026-11-25T08:00:00.000Z", synced=True, boot_id="b", monotonic=1.0))
        uplink = Uplink(outbox=outbox, device_id=ident.device_id, central_key=verify_key_from_text(settings.central_public_key),
                        host="127.0.0.1", port=settings.mqtt_port, topics=Topics(settings.topic_prefix),
                        status=lambda: Status(device=ident.device_id, state="online"), on_bundle=lambda payload: None,
                        tls=(str(settings.mqtt_tls_ca), str(settings.mqtt_tls_cert), str(settings.mqtt_tls_key)))
        uplink.start()
        assert wait_for(lambda: outbox.depth() == 0, timeout=15), "central's signed ack never came back over TLS"
        stored = rig.store.row("SELECT seq, hash FROM records WHERE device = ?", [ident.device_id])
        assert stored == {"seq": 1, "hash": record.hash}
    finally:
        if uplink:
            uplink.stop()
        if collector:
            collector.stop()
        time.sleep(0.1)
        rig.stop()
