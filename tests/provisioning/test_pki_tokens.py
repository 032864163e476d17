"""Central's CA, enrolment tokens and the broker's files, without a network."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from central import registry
from central.broker_config import acl_text, write_broker_config
from central.cli_provisioning import broker_config, token
from central.enrol_tokens import EnrolRefused, create_token, list_tokens, parse_ttl, redeem, token_hash
from central.errors import RegistryError
from central.pki import CentralPki, CsrRefused
from central.store import Store
from edge_agent.identity import DeviceIdentity
from provisioning.enrol import build_csr, make_tls_key, proof_of_possession


@pytest.fixture
def central(tmp_path):
    store = Store(tmp_path / "central" / "central.db")
    registry.add_hall(store, "H1")
    yield store, CentralPki.for_data_dir(tmp_path / "central")
    store.close()


def _device(store, pki, path: Path, token: str | None = None):
    ident = DeviceIdentity(path)
    csr = build_csr(make_tls_key(), ident.device_id)
    token = token or create_token(store, "H1").token
    return ident, redeem(store, pki, token=token, public_key=ident.public_key, csr_pem=csr, proof=proof_of_possession(ident, csr))


def test_ca_key_is_private_and_device_certificates_chain_to_it(central, tmp_path):
    store, pki = central
    ident, done = _device(store, pki, tmp_path / "kiosk")
    assert stat.S_IMODE(pki.ca_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.dir.stat().st_mode) == 0o700
    ca = x509.load_pem_x509_certificate(pki.ca_pem())
    cert = x509.load_pem_x509_certificate(done.certificate.pem)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ident.device_id == done.device
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert registry.get_device(store, ident.device_id)["hall"] == "H1"


def test_broker_certificate_names_loopback_and_the_given_hosts(central):
    store, pki = central
    cert_path, key_path = pki.issue_broker_certificate(["broker.hall.lan", "10.0.0.5"])
    san = x509.load_pem_x509_certificate(cert_path.read_bytes()).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "broker.hall.lan"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.5"}
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_tokens_are_stored_hashed_and_refused_when_unknown_used_or_expired(central, tmp_path):
    store, pki = central
    issued = create_token(store, "H1", parse_ttl("2h"))
    raw = store.rows("SELECT * FROM enrol_tokens")
    assert issued.token not in repr(raw) and raw[0]["token_sha256"] == token_hash(issued.token)
    ident, done = _device(store, pki, tmp_path / "one", issued.token)
    assert list_tokens(store)[0]["used_by"] == ident.device_id
    with pytest.raises(EnrolRefused, match="already used"):
        _device(store, pki, tmp_path / "two", issued.token)
    with pytest.raises(EnrolRefused, match="unknown enrolment token"):
        _device(store, pki, tmp_path / "two", "guess")
    old = create_token(store, "H1", parse_ttl("1h"), now=datetime.now(UTC) - timedelta(hours=1, seconds=1))
    with pytest.raises(EnrolRefused, match="expired"):
        _device(store, pki, tmp_path / "two", old.token)
    with pytest.raises(RegistryError, match="no hall 'H9'"):
        create_token(store, "H9")


@pytest.mark.parametrize("text", ["", "24", "0h", "-1h", "31d", "1w", "h"])
def test_bad_time_to_live_is_refused(text):
    with pytest.raises(RegistryError):
        parse_ttl(text)


def test_time_to_live_units():
    assert parse_ttl("90m") == timedelta(minutes=90) and parse_ttl("7d") == timedelta(days=7)


def test_csr_must_name_exactly_the_device(central):
    _, pki = central
    key = make_tls_key()
    with pytest.raises(CsrRefused, match="is for 'dother'"):
        pki.check_csr(build_csr(key, "dother"), "dme")
    with pytest.raises(CsrRefused, match="not a PEM CSR"):
        pki.check_csr("-----BEGIN CERTIFICATE REQUEST-----\nbroken\n-----END CERTIFICATE REQUEST-----\n", "dme")


def test_crl_and_acl_follow_revocation(central, tmp_path):
    store, pki = central
    gone, gone_cert = _device(store, pki, tmp_path / "gone")
    kept, _ = _device(store, pki, tmp_path / "kept")
    acl = acl_text(store, "hall/v1")
    assert f"user {gone.device_id}\ntopic write hall/v1/{gone.device_id}/attendance" in acl
    assert f"topic read hall/v1/{kept.device_id}/bundle" in acl and "topic read hall/v1/+/attendance" in acl
    registry.revoke_device(store, gone.device_id)
    crl = x509.load_pem_x509_crl(pki.write_crl(store).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(gone_cert.certificate.serial, 16)) is not None
    assert len(list(crl)) == 1
    acl = acl_text(store, "hall/v1")
    assert gone.device_id not in acl and kept.device_id in acl


def test_token_create_prints_the_token_once_on_stdout(central, tmp_path, monkeypatch):
    store, _ = central
    monkeypatch.setenv("HALL_CENTRAL_DATA_DIR", str(tmp_path / "central"))
    result = CliRunner().invoke(token, ["create", "--hall", "H1", "--ttl", "2h"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert len(secret.splitlines()) == 1 and len(secret) >= 32
    assert "valid until" in result.stderr and "--ca-fingerprint" in result.stderr
    assert store.scalar("SELECT COUNT(*) FROM enrol_tokens WHERE token_sha256 = ?", [token_hash(secret)]) == 1
    listed = CliRunner().invoke(token, ["list"])
    assert "H1" in listed.output and secret not in listed.output
    refused = CliRunner().invoke(token, ["create", "--hall", "H1", "--ttl", "forever"])
    assert refused.exit_code == 1 and "bad time to live" in refused.output


def test_broker_config_command_writes_a_tls_only_configuration(central, tmp_path, monkeypatch):
    monkeypatch.setenv("HALL_CENTRAL_DATA_DIR", str(tmp_path / "central"))
    out = tmp_path / "broker"
    result = CliRunner().invoke(broker_config, ["--out", str(out), "--port", "8884", "--host", "broker.lan"])
    assert result.exit_code == 0, result.output
    conf = (out / "mosquitto.conf").read_text()
    for line in ("listener 8884", "require_certificate true", "use_identity_as_username true",
                 f"crlfile {out.resolve() / 'crl.pem'}", f"acl_file {out.resolve() / 'acl'}", "allow_anonymous false"):
        assert line in conf
    assert "listener 1883" not in conf
    assert (tmp_path / "central" / "pki" / "central.crt").is_file()
    assert stat.S_IMODE((out / "broker.key").stat().st_mode) in (0o600, 0o640)


def test_rewriting_the_config_keeps_the_ca(central, tmp_path):
    store, pki = central
    write_broker_config(store, pki, tmp_path / "b")
    before = pki.ca_pem()
    write_broker_config(store, pki, tmp_path / "b")
    assert pki.ca_pem() == before == (tmp_path / "b" / "ca.crt").read_bytes()


def test_enrolment_tables_come_from_the_numbered_migrations(tmp_path):
    import sqlite3

    fresh = Store(tmp_path / "fresh" / "central.db")
    try:
        tables = {r["name"] for r in fresh.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # Present before any token or certificate code has run: a reader (the dashboard, a backup script) finds them.
        assert {"device_certificates", "enrol_tokens"} <= tables
        applied = {r["name"] for r in fresh.rows("SELECT name FROM _sqlite_migrations")}
        assert "m004_enrolment_tables" in applied
    finally:
        fresh.close()
    # A database from before the migration, whose tables were made at call time, keeps its rows.
    old_path = tmp_path / "old" / "central.db"
    Store(old_path).close()
    db = sqlite3.connect(old_path)
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm004_enrolment_tables'")
    db.execute("DROP TABLE IF EXISTS device_certificates")
    db.execute("DROP TABLE IF EXISTS enrol_tokens")
    db.execute("CREATE TABLE device_certificates (serial TEXT PRIMARY KEY, device TEXT NOT NULL REFERENCES devices(id), "
               "issued_at TEXT NOT NULL, not_after TEXT NOT NULL, certificate TEXT NOT NULL)")
    db.execute("CREATE TABLE enrol_tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, token_sha256 TEXT NOT NULL UNIQUE, "
               "hall TEXT NOT NULL REFERENCES halls(id), created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT, used_by TEXT)")
    db.execute("INSERT INTO halls (id, name, created_at) VALUES ('H1', 'H1', '2024-01-01T00:00:00Z')")
    db.execute("INSERT INTO enrol_tokens (token_sha256, hall, created_at, expires_at) VALUES ('abc', 'H1', 'x', 'y')")
    db.commit()
    db.close()
    upgraded = Store(old_path)
    try:
        assert upgraded.scalar("SELECT token_sha256 FROM enrol_tokens") == "abc"
        columns = {r["name"] for r in upgraded.rows("PRAGMA table_info(device_certificates)")}
        assert "revoked_at" in columns
    finally:
        upgraded.close()


def test_enrol_limiter_refills_over_time_and_remembers_a_bounded_number_of_sources():
    from central.enrol_limits import SourceLimiter

    now = [0.0]
    limiter = SourceLimiter(per_minute=6, burst=2, max_sources=3, clock=lambda: now[0])
    assert [limiter.take("a").allowed for _ in range(3)] == [True, True, False]
    refused = limiter.take("a")
    assert not refused.allowed and not refused.first_refusal and 0 < refused.retry_after_s <= 10
    now[0] += 10  # 6 a minute: one more after 10 s
    assert limiter.take("a").allowed and not limiter.take("a").allowed
    for source in ("b", "c", "d"):
        limiter.take(source)
    assert len(limiter._buckets) == 3 and "a" not in limiter._buckets
