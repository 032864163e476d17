"""A proxy on the path between the kiosk and central tries to take over the enrolment.

It forwards to the real central and rewrites the answer as the review did: face check off
(threshold 9.0), the camera and the stream ingest pointed at its own servers, a central key of its
own. Whatever it holds — no TLS, its own certificate, a kiosk's certificate from central's CA, even
the broker's server certificate and key — enrolment fails and nothing is written.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from nacl.signing import SigningKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from central import registry
from central.enrol_tokens import token_hash
from contract import public_key_text, sign_object
from provisioning import ProvisioningError
from tests.conftest import free_port

from . import Rig

ATTACKER_KEY = SigningKey.generate()
EVIL = {
    "face_threshold": "9.0",
    "camera": "rtsp://10.66.6.6/cam",
    "stream_source": "lavfi",
    "stream_ingest_url": "rtmp://10.66.6.6/live/stolen",
    "central_public_key": public_key_text(ATTACKER_KEY),
}


def _self_signed(cn: str, *, server: bool = True) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key


def _attacker_key_certificate() -> str:
    """A certificate for the attacker's Ed25519 key, with central's signing name, from the attacker's own CA."""
    ca_pem, ca_key = _self_signed("Hall central CA")
    ca = x509.load_pem_x509_certificate(ca_pem)
    now = datetime.now(UTC)
    pub = ed25519.Ed25519PublicKey.from_public_bytes(bytes(ATTACKER_KEY.verify_key))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hall-central-signing")]))
            .issuer_name(ca.subject).public_key(pub).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class RewritingProxy:
    """Forwards /enrol/ca and /enrol to central; rewrites the enrolment answer (``resign``: and signs it itself)."""

    def __init__(self, upstream: str, *, cert: tuple[bytes, bytes] | None, workdir, resign: bool = False):
        self.upstream, self.resign = upstream, resign
        self.forwarded_posts = 0
        app = Starlette(routes=[Route("/enrol/ca", self._ca), Route("/enrol", self._enrol, methods=["POST"])])
        self.port = free_port()
        kw = {}
        if cert is not None:
            (workdir / "proxy.crt").write_bytes(cert[0])
            (workdir / "proxy.key").write_bytes(cert[1])
            kw = {"ssl_certfile": str(workdir / "proxy.crt"), "ssl_keyfile": str(workdir / "proxy.key")}
        self.url = f"{'https' if cert else 'http'}://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off", **kw))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def _ca(self, request: Request) -> Response:
        async with httpx.AsyncClient(verify=False) as http:
            resp = await http.get(self.upstream + "/enrol/ca")
        return Response(resp.content, resp.status_code, media_type="application/json")

    async def _enrol(self, request: Request) -> Response:
        self.forwarded_posts += 1
        async with httpx.AsyncClient(verify=False, timeout=30) as http:
            resp = await http.post(self.upstream + "/enrol", content=await request.body(),
                                   headers={"content-type": "application/json"})
        answer = resp.json()
        if resp.status_code == 200:
            answer["agent_config"].update(EVIL)
            answer["central_public_key"] = EVIL["central_public_key"]
            if self.resign:
                answer.pop("sig")
                answer["central_key_certificate"] = _attacker_key_certificate()
                answer = sign_object(ATTACKER_KEY, answer)
        return JSONResponse(answer, resp.status_code)

    def __enter__(self) -> RewritingProxy:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("rig")).start()
    yield r
    r.stop()


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _proxy_cert(rig, kind: str) -> tuple[bytes, bytes] | None:
    if kind == "plain http":
        return None
    if kind == "own certificate":
        cert, key = _self_signed("localhost")
        return cert, _pem_key(key)
    if kind == "a kiosk's certificate from central's CA":
        kiosk = rig.enrol(f"stolen-{time.monotonic_ns()}")
        return kiosk.tls.cert.read_bytes(), kiosk.tls.key.read_bytes()
    # The broker's server certificate chains to the pinned CA: TLS alone would let this one through.
    return rig.broker.files.dir.joinpath("broker.crt").read_bytes(), rig.broker.files.dir.joinpath("broker.key").read_bytes()


@pytest.mark.parametrize(("kind", "resign", "token_reaches_central"), [
    ("plain http", False, False),
    ("own certificate", False, False),
    ("a kiosk's certificate from central's CA", False, False),
    ("the broker's certificate and key", False, True),
    ("the broker's certificate and key", True, True),
])
def test_a_proxy_that_rewrites_the_answer_gets_nothing_written(rig, tmp_path, kind, resign, token_reaches_central):
    token = rig.token()
    data = tmp_path / "kiosk"
    with RewritingProxy(rig.central.url, cert=_proxy_cert(rig, kind), workdir=tmp_path, resign=resign) as proxy:
        with pytest.raises(ProvisioningError) as failed:
            _enrol(rig, proxy.url, token, data)
    message = str(failed.value)
    assert "nothing was written" in message or "not sent" in message or "nothing was sent" in message, message
    assert not (data / "agent.env").exists() and not (data / "tls.crt").exists()
    used = rig.store.scalar("SELECT used_at FROM enrol_tokens WHERE token_sha256 = ?", [token_hash(token)])
    if token_reaches_central:
        assert proxy.forwarded_posts == 1
    else:
        # The token never left the kiosk: it still works once the technician reaches the real central.
        assert proxy.forwarded_posts == 0 and used is None
        assert rig.enrol(f"after-{tmp_path.name}", token=token).hall == "H1"


def _enrol(rig, url: str, token: str, data):
    from provisioning.enrol import enroll

    return enroll(central_url=url, token=token, data_dir=data, ca_fingerprint=rig.pki.ca_fingerprint())


def test_the_honest_answer_gives_the_certified_central_key(rig):
    result = rig.enrol("honest")
    from provisioning.enrol import read_env_file

    env = read_env_file(result.env_file)
    assert env["HALL_AGENT_CENTRAL_PUBLIC_KEY"] == rig.central.app.state.enrolment.central_public_key
    assert registry.get_device(rig.store, result.device)["hall"] == "H1"
