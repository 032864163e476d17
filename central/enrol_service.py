"""Central's enrolment service as configured by ``HALL_CENTRAL_*``: what ``POST /enrol`` needs to answer."""

from __future__ import annotations

from . import keys
from .enrol_limits import SourceLimiter
from .enrol_tokens import EnrolmentConfig
from .pki import CentralPki
from .settings import CentralSettings

BROKER_DIR = "broker"


def enrolment_config(settings: CentralSettings) -> EnrolmentConfig:
    s = settings
    return EnrolmentConfig(
        pki=CentralPki.for_data_dir(s.data_dir), central_public_key=keys.central_public_key(s),
        broker_host=s.broker_public_host, broker_port=s.broker_tls_port, topic_prefix=s.topic_prefix,
        broker_dir=s.data_dir / BROKER_DIR,
        limiter=SourceLimiter(per_minute=s.enrol_rate_per_minute, burst=s.enrol_burst),
    )
