"""Shared parts of the provisioning tests: central's API on its HTTPS enrolment listener, a TLS Mosquitto from broker_config,
MQTT clients with device certificates, and the simulated hardware a self-test checks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from central import keys
from central.api import create_app
from central.api.routes import enrol as enrol_route
from central.broker_config import BrokerFiles, mosquitto_binary, write_broker_config
from central.enrol_limits import SourceLimiter
from central.enrol_service import EnrolListener
from central.enrol_tokens import EnrolmentConfig
from central.pki import CentralPki
from central.store import Store
from tests.conftest import free_port, require, wait_port

STAFF_TOKEN = "test-staff-token-0123456789"


class TlsBroker:
    """Mosquitto run from the configuration `hall central broker-config` writes, on a random loopback port."""

    def __init__(self, store: Store, pki: CentralPki):
        self.port = free_port()
        # Run as production runs it: started as root, mosquitto drops to its own user, which cannot enter
        # pytest's 0700 tmp dirs; so the files go to a directory of their own under /tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="hall-broker-"))
        self.log = self.dir / "mosquitto.log"
        self.files: BrokerFiles = write_broker_config(store, pki, self.dir, port=self.port, bind="127.0.0.1", log_file=self.log)
        assert not self.files.warnings, self.files.warnings
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = mosquitto_binary()
        require("mosquitto", exe is not None, "apt-get install mosquitto (scripts/install.sh does it)")
        self.proc = subprocess.Popen([exe, "-c", str(self.files.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class CentralServer:
    """central.api.create_app with the enrol router, served over HTTPS by central's own enrolment listener."""

    def __init__(self, store: Store, data_dir: Path, broker: TlsBroker):
        self.pki = CentralPki.for_data_dir(data_dir)
        self.app = create_app(store=store, staff_token=STAFF_TOKEN, collector=None)
        self.app.include_router(enrol_route.router)
        self.app.state.enrolment = EnrolmentConfig(
            pki=self.pki, signing_key=keys.signing_key(data_dir), broker_host="127.0.0.1", broker_port=broker.port,
            topic_prefix="hall/v1", broker_dir=broker.files.dir,
            # Every test here enrols from 127.0.0.1; the flood test installs a strict limiter of its own.
            limiter=SourceLimiter(per_minute=60_000, burst=1_000),
        )
        self.port = free_port()
        self.listener = EnrolListener(self.app, self.pki, "127.0.0.1", self.port)
        self.url = self.listener.url

    def start(self) -> None:
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()


@dataclass
class Client:
    """An MQTT client with a certificate; ``connected`` is False when the broker never completed CONNECT."""

    mqtt: mqtt.Client
    connected: bool
    received: list[tuple[str, bytes]]


def mqtt_client(port: int, ca: Path, cert: Path, key: Path, *, subscribe: list[str] = (), timeout: float = 3.0) -> Client:
    received: list[tuple[str, bytes]] = []
    connack, subacks = threading.Event(), threading.Event()
    state: dict = {}
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)

    def on_connect(client, userdata, flags, reason, properties=None):
        state["ok"] = not reason.is_failure
        connack.set()
        if subscribe:
            client.subscribe([(t, 1) for t in subscribe])
        else:
            subacks.set()

    c.on_connect = on_connect
    c.on_subscribe = lambda *a: subacks.set()
    c.on_message = lambda client, userdata, msg: received.append((msg.topic, msg.payload))
    c.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
    try:
        c.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return Client(c, False, received)
    c.loop_start()
    ok = connack.wait(timeout) and state.get("ok", False) and subacks.wait(timeout)
    return Client(c, bool(ok), received)


def close(client: Client) -> None:
    client.mqtt.disconnect()
    client.mqtt.loop_stop()


def wait_for(predicate, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()




class Rig:
    """Central (store, CA, API) and its TLS broker in ``root``; hall H1 exists."""

    def __init__(self, root: Path):
        from central import registry

        self.root = root
        self.data_dir = root / "central"
        self.store = Store(self.data_dir / "central.db")
        registry.add_hall(self.store, "H1", "Hall one")
        self.pki = CentralPki.for_data_dir(self.data_dir)
        self.broker = TlsBroker(self.store, self.pki)
        self.central = CentralServer(self.store, self.data_dir, self.broker)
        self.central_cert, self.central_key = self.pki.ensure_central_certificate()

    def start(self) -> Rig:
        self.broker.start()
        self.central.start()
        return self

    def stop(self) -> None:
        self.central.stop()
        self.broker.remove()
        self.store.close()

    def token(self, ttl_s: int = 3600, **kw) -> str:
        from datetime import timedelta

        from central.enrol_tokens import create_token

        return create_token(self.store, "H1", timedelta(seconds=ttl_s), **kw).token

    def enrol(self, name: str, **kw):
        from provisioning.enrol import enroll

        kw.setdefault("ca_fingerprint", self.pki.ca_fingerprint())
        return enroll(central_url=self.central.url, token=kw.pop("token", None) or self.token(), data_dir=self.root / name, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        """A request to central's enrolment listener, trusting only its CA (as a kiosk does)."""
        from cryptography import x509

        from provisioning.enrol import pinned_tls

        with httpx.Client(verify=pinned_tls(x509.load_pem_x509_certificate(self.pki.ca_pem())), timeout=30) as http:
            return http.post(self.central.url + path, **kw)

    def central_client(self, subscribe: list[str] = ()) -> Client:
        return mqtt_client(self.broker.port, self.pki.ca_cert_path, self.central_cert, self.central_key, subscribe=list(subscribe))

    def device_client(self, result, subscribe: list[str] = (), timeout: float = 3.0) -> Client:
        return mqtt_client(self.broker.port, result.tls.ca, result.tls.cert, result.tls.key, subscribe=list(subscribe), timeout=timeout)

    def rejections(self, device: str | None = None) -> list[dict]:
        where, params = ("WHERE topic = 'enrol' AND device = ?", [device]) if device else ("WHERE topic = 'enrol'", [])
        return self.store.rows(f"SELECT * FROM rejections {where} ORDER BY id", params)
