"""Central as deployed (CentralService with its HTTPS enrolment listener) hands kiosks the broker address
that `hall central broker-config --host` was given."""

from __future__ import annotations

from click.testing import CliRunner

from central import registry
from central.cli_provisioning import broker_config
from central.enrol_tokens import create_token
from central.pki import CentralPki
from central.service import CentralService
from central.store import open_store
from provisioning.enrol import enroll, read_env_file
from tests.central import settings_for
from tests.conftest import free_port


def test_the_host_given_to_broker_config_is_what_kiosks_are_told(tmp_path, broker, monkeypatch):
    settings = settings_for(tmp_path, broker.port, http_port=free_port(), enrol_port=free_port())
    monkeypatch.setenv("HALL_CENTRAL_DATA_DIR", str(settings.data_dir))
    with open_store(settings.data_dir) as store:
        registry.add_hall(store, "H1", "Hall one")
        token = create_token(store, "H1").token
    written = CliRunner().invoke(broker_config, ["--host", "broker.hall.lan", "--host", "10.0.0.5", "--port", "18883"])
    assert written.exit_code == 0, written.output
    assert "kiosks will be told broker.hall.lan:18883" in written.output
    fingerprint = CentralPki.for_data_dir(settings.data_dir).ca_fingerprint()
    with CentralService(settings) as service:
        assert service.enrol_listener is not None
        result = enroll(central_url=service.enrol_listener.url, token=token, data_dir=tmp_path / "kiosk",
                        ca_fingerprint=fingerprint)
    env = read_env_file(result.env_file)
    assert (env["HALL_AGENT_MQTT_HOST"], env["HALL_AGENT_MQTT_PORT"]) == ("broker.hall.lan", "18883")
    assert result.broker == ("broker.hall.lan", 18883)


def test_an_explicit_broker_public_host_setting_still_wins(tmp_path, broker, monkeypatch):
    settings = settings_for(tmp_path, broker.port, http_port=free_port(), enrol_port=free_port(),
                            broker_public_host="override.lan")
    monkeypatch.setenv("HALL_CENTRAL_DATA_DIR", str(settings.data_dir))
    with open_store(settings.data_dir) as store:
        registry.add_hall(store, "H1", "Hall one")
        token = create_token(store, "H1").token
    assert CliRunner().invoke(broker_config, ["--host", "broker.hall.lan"]).exit_code == 0
    fingerprint = CentralPki.for_data_dir(settings.data_dir).ca_fingerprint()
    with CentralService(settings) as service:
        result = enroll(central_url=service.enrol_listener.url, token=token, data_dir=tmp_path / "kiosk",
                        ca_fingerprint=fingerprint)
    assert result.broker == ("override.lan", 8883)
