"""Enrolment over real HTTP against central's app (uvicorn), with a real TLS Mosquitto and the simulated hardware."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import NameOID

from central import registry
from edge_agent.identity import DeviceIdentity
from hall.cmd_provision import provision
from provisioning import AlreadyEnrolled, EnrolRefused
from provisioning.enrol import build_csr, make_tls_key, proof_of_possession, read_env_file
from tests.conftest import free_port

from . import Rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("rig")).start()
    yield r
    r.stop()


def _env(data_dir: Path, twins: dict, **over: str) -> dict[str, str]:
    env = {
        "HALL_AGENT_DATA_DIR": str(data_dir),
        "HALL_AGENT_CAMERA": f"still:{twins['stage']}",
        "HALL_AGENT_CARD_READER": twins["reader"],
        "HALL_AGENT_MOCK_GPIO": "true",
    }
    env.update(over)
    return env


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_one_command_enrols_writes_private_files_and_passes_selftest(rig, twins, tmp_path):
    data = tmp_path / "kiosk"
    token = rig.token()
    result = CliRunner().invoke(
        provision, ["enroll", "--central", rig.central.url, "--token", token, "--sync-flag", str(twins["sync_flag"]),
                    "--ca-fingerprint", rig.pki.ca_fingerprint()],
        env=_env(data, twins), catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    device = DeviceIdentity(data).device_id
    assert f"enrolled kiosk {device} in hall H1" in result.output
    assert "all checks passed" in result.output
    assert f"connected to 127.0.0.1:{rig.broker.port} over TLS as {device}" in result.output
    for secret in ("device.key", "storage.key", "tls.key", "agent.env"):
        assert _mode(data / secret) == 0o600, secret
    env = read_env_file(data / "agent.env")
    assert env["HALL_AGENT_HALL"] == "H1"
    assert env["HALL_AGENT_MQTT_PORT"] == str(rig.broker.port)
    assert env["HALL_AGENT_MQTT_TLS_CERT"] == str(data.resolve() / "tls.crt")
    assert env["HALL_AGENT_CENTRAL_PUBLIC_KEY"] and env["HALL_AGENT_TOPIC_PREFIX"] == "hall/v1"
    cert = x509.load_pem_x509_certificate((data / "tls.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device
    assert registry.get_device(rig.store, device)["hall"] == "H1"
    used = rig.store.row("SELECT used_by FROM enrol_tokens WHERE used_at IS NOT NULL AND used_by = ?", [device])
    assert used is not None
    # The private keys never travelled: central holds only the public key and the certificate.
    assert (data / "tls.key").read_text() not in json.dumps(rig.store.rows("SELECT * FROM device_certificates"))


def test_reused_token_is_refused_with_a_reason_staff_can_see(rig, tmp_path):
    token = rig.token()
    first = rig.enrol("first", token=token)
    with pytest.raises(EnrolRefused) as refused:
        rig.enrol("second", token=token)
    assert refused.value.status == 403
    assert "already used" in refused.value.reason and first.device in refused.value.reason
    assert not (tmp_path.parent / "second" / "agent.env").exists()
    second = DeviceIdentity(rig.root / "second").device_id
    assert registry.get_device(rig.store, second) is None
    kept = rig.rejections(second)
    assert kept and "already used" in kept[-1]["reason"]
    assert token not in kept[-1]["payload"]  # the secret is not copied into the rejections table


def test_expired_token_is_refused(rig):
    token = rig.token(ttl_s=3600, now=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(EnrolRefused, match="expired"):
        rig.enrol("late", token=token)
    assert "expired" in rig.rejections(DeviceIdentity(rig.root / "late").device_id)[-1]["reason"]
    with pytest.raises(EnrolRefused, match="unknown enrolment token"):
        rig.enrol("late", token="not-a-token-anyone-issued")


def test_csr_for_another_device_is_refused_and_the_token_survives(rig, tmp_path):
    victim = rig.enrol("victim")
    attacker = DeviceIdentity(tmp_path / "attacker")
    token = rig.token()
    key = make_tls_key()
    # 1. the attacker's own key, but a CSR naming the victim's device id
    csr = build_csr(key, victim.device)
    body = {"token": token, "public_key": attacker.public_key, "csr": csr, "proof": proof_of_possession(attacker, csr)}
    resp = rig.post("/enrol", json=body)
    assert resp.status_code == 400
    assert f"the certificate request is for '{victim.device}', but the submitted key is device {attacker.device_id}" in resp.json()["detail"]
    # 2. the victim's public key, without the victim's private key to sign the proof
    body = {**body, "public_key": DeviceIdentity(rig.root / "victim").public_key}
    resp = rig.post("/enrol", json=body)
    assert resp.status_code == 400 and "proof of possession" in resp.json()["detail"]
    reasons = [r["reason"] for r in rig.rejections()]
    assert any("the certificate request is for" in r for r in reasons) and any("proof of possession" in r for r in reasons)
    assert registry.get_device(rig.store, attacker.device_id) is None
    # A refused attempt does not burn the token: the technician can still use it.
    assert rig.enrol("honest", token=token).hall == "H1"


def test_re_enrolment_needs_force(rig, twins, tmp_path):
    first = rig.enrol("again")
    cert_before = first.tls.cert.read_bytes()
    result = CliRunner().invoke(provision, ["enroll", "--central", rig.central.url, "--token", rig.token(), "--skip-selftest",
                                            "--ca-fingerprint", rig.pki.ca_fingerprint()],
                                env=_env(rig.root / "again", twins))
    assert result.exit_code == 1
    assert "already enrolled" in result.output and "--force" in result.output
    assert first.tls.cert.read_bytes() == cert_before
    with pytest.raises(AlreadyEnrolled):
        rig.enrol("again")
    second = rig.enrol("again", force=True)
    assert second.device == first.device  # the device key, and so the id and the outbox chain, stay
    assert second.tls.cert.read_bytes() != cert_before


def test_malformed_request_is_refused_and_kept(rig):
    resp = rig.post("/enrol", content=b'{"token": 5}', headers={"content-type": "application/json"})
    assert resp.status_code == 422 and "malformed enrolment request" in resp.json()["detail"]
    assert "malformed" in rig.rejections()[-1]["reason"]


def test_wrong_ca_fingerprint_writes_nothing(rig):
    from provisioning import ProvisioningError

    with pytest.raises(ProvisioningError, match="does not match the fingerprint"):
        rig.enrol("pinned", ca_fingerprint="AA:" * 31 + "AA")
    assert not (rig.root / "pinned" / "agent.env").exists() and not (rig.root / "pinned" / "tls.key").exists()


def test_wrong_ca_fingerprint_neither_burns_the_token_nor_registers_the_kiosk(rig):
    from central.enrol_tokens import token_hash
    from provisioning import ProvisioningError

    token = rig.token()
    with pytest.raises(ProvisioningError, match="the token was not sent"):
        rig.enrol("typo", token=token, ca_fingerprint="AB:" * 31 + "CD")
    assert rig.store.scalar("SELECT used_at FROM enrol_tokens WHERE token_sha256 = ?", [token_hash(token)]) is None
    device = DeviceIdentity(rig.root / "typo").device_id
    assert registry.get_device(rig.store, device) is None
    # With the fingerprint typed right, the same token still works.
    assert rig.enrol("typo", token=token).device == device


@pytest.mark.parametrize("typed", ["", "AA:BB", "zz" * 32, "AA:" * 32 + "AA", "A" * 63, "sha256:" + "ab" * 32])
def test_a_malformed_fingerprint_is_refused_before_any_network(tmp_path, typed):
    closed = f"https://127.0.0.1:{free_port()}"  # nothing listens: an error about the network would mean we dialled
    result = CliRunner().invoke(provision, ["enroll", "--central", closed, "--token", "t", "--ca-fingerprint", typed,
                                            "--data-dir", str(tmp_path / "k"), "--skip-selftest"])
    assert result.exit_code == 1
    assert "is not a SHA-256 fingerprint" in result.output and "cannot reach" not in result.output
    assert not (tmp_path / "k").exists()


def test_fingerprint_and_https_are_required(tmp_path):
    missing = CliRunner().invoke(provision, ["enroll", "--central", "https://c.example", "--token", "t",
                                             "--data-dir", str(tmp_path / "k")])
    assert missing.exit_code == 2 and "--ca-fingerprint" in missing.output
    plain = CliRunner().invoke(provision, ["enroll", "--central", "http://c.example:8800", "--token", "t",
                                           "--ca-fingerprint", "ab" * 32, "--data-dir", str(tmp_path / "k")])
    assert plain.exit_code == 1 and "refusing http://c.example:8800" in plain.output and "https://" in plain.output


def test_re_enrolment_revokes_the_previous_certificate(rig, tmp_path):
    from . import close, mqtt_client, wait_for

    first = rig.enrol("renewed")
    old_cert, old_key = tmp_path / "old.crt", tmp_path / "old.key"
    old_cert.write_bytes(first.tls.cert.read_bytes())
    old_key.write_bytes(first.tls.key.read_bytes())
    old_serial = x509.load_pem_x509_certificate(old_cert.read_bytes()).serial_number
    second = rig.enrol("renewed", force=True)
    crl = x509.load_pem_x509_crl(rig.broker.files.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old_serial) is not None
    new_serial = x509.load_pem_x509_certificate(second.tls.cert.read_bytes()).serial_number
    assert crl.get_revoked_certificate_by_serial_number(new_serial) is None

    def old_refused() -> bool:
        c = mqtt_client(rig.broker.port, first.tls.ca, old_cert, old_key, timeout=1.0)
        close(c)
        return not c.connected

    # A copy of the old certificate (a kiosk's card cloned before re-enrolment) no longer gets in.
    assert wait_for(old_refused, timeout=30, step=0.2)
    now = rig.device_client(second)
    assert now.connected
    close(now)


def test_deeply_nested_json_is_refused_as_bad_input_and_kept(rig):
    before = len(rig.rejections())
    body = b'{"token": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # 40 KB: under the size limit
    resp = rig.post("/enrol", content=body, headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    kept = rig.rejections()
    assert len(kept) == before + 1 and kept[-1]["reason"]


def test_enrol_flood_is_rate_limited_and_keeps_little(rig):
    import dataclasses

    from central.enrol_limits import SourceLimiter

    config = rig.central.app.state.enrolment
    rig.central.app.state.enrolment = dataclasses.replace(config, limiter=SourceLimiter(per_minute=0.001, burst=5))
    try:
        before = len(rig.rejections())
        big = json.dumps({"token": "t", "public_key": "k", "csr": "x" * 60_000, "proof": "p"}).encode()
        codes = [rig.post("/enrol", content=big, headers={"content-type": "application/json"}).status_code
                 for _ in range(4)]
        codes.append(rig.post("/enrol", content=b"\xff not json" * 1000).status_code)
        flood = [rig.post("/enrol", content=big).status_code for _ in range(30)]
        assert codes == [422] * 4 + [400]
        assert set(flood) == {429}
        kept = rig.rejections()[before:]
        # Five refusals with a short prefix each (none for the body that did not parse), and one note that
        # the source is being limited: not thirty-five rows of up to 64 KiB.
        assert len(kept) == 6
        assert all(len(r["payload"]) <= 512 for r in kept)
        assert kept[4]["payload"] == ""
        assert "too many enrolment requests from 127.0.0.1" in kept[5]["reason"]
    finally:
        rig.central.app.state.enrolment = config
