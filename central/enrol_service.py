"""Central's enrolment service as configured by ``HALL_CENTRAL_*``: what ``POST /enrol`` needs, and
the HTTPS listener kiosks enrol through.

The listener serves central's app over TLS with a certificate from central's
own CA (``pki/enrol.crt``), because the kiosk trusts nothing but the CA whose
fingerprint the technician typed. It is separate from the staff API's listener
so that one can stay plain HTTP on loopback (nginx-rtmp's callback, a reverse
proxy with a public certificate in front of the dashboard).
"""

from __future__ import annotations

from collections.abc import Iterable

import uvicorn

from . import keys
from .enrol_limits import SourceLimiter
from .enrol_tokens import EnrolmentConfig
from .pki import CentralPki
from .server_thread import ServerThread
from .settings import CentralSettings

BROKER_DIR = "broker"
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def explicit_broker(settings: CentralSettings) -> tuple[str | None, int | None]:
    """HALL_CENTRAL_BROKER_PUBLIC_HOST/BROKER_TLS_PORT if set: they beat what broker-config saved."""
    given = settings.model_fields_set
    return (settings.broker_public_host if "broker_public_host" in given else None,
            settings.broker_tls_port if "broker_tls_port" in given else None)


def enrolment_config(settings: CentralSettings) -> EnrolmentConfig:
    s = settings
    host, port = explicit_broker(s)
    return EnrolmentConfig(
        pki=CentralPki.for_data_dir(s.data_dir), signing_key=keys.signing_key(s.data_dir),
        broker_host=host, broker_port=port, topic_prefix=s.topic_prefix,
        broker_dir=s.data_dir / BROKER_DIR,
        limiter=SourceLimiter(per_minute=s.enrol_rate_per_minute, burst=s.enrol_burst),
    )


class EnrolListener:
    """``app`` served over HTTPS on ``host:port`` with the enrolment certificate from ``pki``."""

    def __init__(self, app: object, pki: CentralPki, host: str, port: int, *, names: Iterable[str] = ()):
        self.host, self.port = host, port
        san = [h for h in (host, *names) if h not in WILDCARD_HOSTS]
        cert, key = pki.ensure_enrol_certificate(san)
        self._http = ServerThread(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                                 ssl_certfile=str(cert), ssl_keyfile=str(key)), name="central-enrol")

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self._http.start("the enrolment listener", timeout)

    def stop(self) -> None:
        self._http.stop()
