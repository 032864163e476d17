"""Settings of central (`HALL_CENTRAL_*` environment variables).

The staff token is a secret: it may come from the environment or, under systemd,
from ``$CREDENTIALS_DIRECTORY/staff_token`` (``LoadCredential=``), so it never
has to sit in a unit file. It is the bootstrap admin credential; staff log in
with their own accounts (central/accounts.py) and it can be switched off. Placeholder tokens are refused when the service
starts, not when settings load, so offline commands (`hall central key`) work
without one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from contract import DEFAULT_PREFIX

from .enrol_limits import DEFAULT_BURST, DEFAULT_PER_MINUTE
from .errors import SettingsError

# Fields that may be read from systemd's credentials directory, one file each.
CREDENTIAL_FIELDS = ("staff_token", "alert_smtp_password", "alert_webhook_secret")
PLACEHOLDER_TOKENS = {
    "", "changeme", "change-me", "change_me", "changethis", "secret", "password", "token",
    "staff", "admin", "placeholder", "example", "test", "xxx", "todo", "none", "null",
}
MIN_TOKEN_CHARS = 16
# Bound to one of these, the page is opened at a loopback address (a wildcard is no origin a browser sends).
LOOPBACK_OR_WILDCARD = ("0.0.0.0", "::", "", "127.0.0.1", "localhost", "::1")


class CredentialsDirectorySource(PydanticBaseSettingsSource):
    """Read secret fields from ``$CREDENTIALS_DIRECTORY/<field name>`` when systemd provides one."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return {}
        found: dict[str, Any] = {}
        for name in CREDENTIAL_FIELDS:
            path = Path(directory) / name
            if path.is_file():
                found[name] = path.read_text(encoding="utf-8").strip()
        return found


class CentralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HALL_CENTRAL_", extra="forbid")

    data_dir: Path = Field(Path("var/central"), description="writable data directory: database, central's signing key, template key")
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host")
    mqtt_port: int = Field(1883, description="MQTT broker port")
    mqtt_client_id: str = Field("hall-central", description="MQTT client id; the broker keeps this persistent session's queued records while central is down")
    mqtt_keepalive: int = Field(30, description="MQTT keepalive seconds")
    topic_prefix: str = Field(DEFAULT_PREFIX, description="MQTT topic prefix shared with the kiosks")
    http_host: str = Field("127.0.0.1", description="address the API and staff page listen on")
    http_port: int = Field(8800, description="port of the API and staff page")
    staff_token: SecretStr = Field(SecretStr(""), description="shared bootstrap token: an admin credential (Bearer header only; `hall central login-link` opens the page) until staff accounts exist; also read from $CREDENTIALS_DIRECTORY/staff_token")
    staff_token_enabled: bool = Field(True, description="accept the shared staff token as an admin credential; set false once `hall central user add --role admin` has made a real admin, and the token is then neither needed nor accepted")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="how long a staff login lasts before the password is asked again")
    public_origins: str = Field("", description="comma-separated origins staff open the page at (https://central.example); a state-changing request carrying a login cookie must come from one of them (Origin or Referer). Empty: http://HTTP_HOST:HTTP_PORT, and its localhost/127.0.0.1 forms for a loopback or wildcard host")
    mqtt_tls_ca: Path | None = Field(None, description="CA certificate for a TLS broker (central's own CA: data_dir/pki/ca.crt)")
    mqtt_tls_cert: Path | None = Field(None, description="central's client certificate for a TLS broker (data_dir/pki/central.crt)")
    mqtt_tls_key: Path | None = Field(None, description="central's TLS key (data_dir/pki/central.key)")
    broker_public_host: str = Field("127.0.0.1", description="broker address handed to kiosks at enrolment; when unset, the first --host given to `hall central broker-config` (else 127.0.0.1)")
    broker_tls_port: int = Field(8883, description="broker TLS port handed to kiosks at enrolment; when unset, broker-config's --port")
    enrol_host: str = Field("127.0.0.1", description="address the HTTPS enrolment listener binds (0.0.0.0 so kiosks on the hall network reach it)")
    enrol_port: int = Field(0, ge=0, le=65535, description="port of the HTTPS enrolment listener kiosks use (`hall provision enroll --central https://HOST:PORT`); 0 = no listener")
    enrol_rate_per_minute: float = Field(DEFAULT_PER_MINUTE, gt=0, description="POST /enrol requests one client address may make per minute, after its burst; more are answered 429 and not kept")
    enrol_burst: int = Field(DEFAULT_BURST, ge=1, description="POST /enrol requests one client address may make at once before the per-minute rate applies")
    media_enabled: bool = Field(False, description="run the media server (nginx-rtmp): halls push their streams, the main room is served as HLS")
    media_host: str = Field("127.0.0.1", description="address the media server listens on")
    media_rtmp_port: int = Field(1935, description="RTMP port the halls push to")
    media_http_port: int = Field(8081, description="HTTP port serving the main room's HLS")
    media_quota_mb: float = Field(20480.0, ge=0, description="disk the halls' recordings may use (a hall's push is ~250 MB an hour); beyond it the oldest finished recordings are deleted, and GET /api/media says so; 0 = no quota")
    media_max_age_days: float = Field(90.0, ge=0, description="recordings older than this are deleted; 0 = no age limit")
    media_retention_interval_s: float = Field(60.0, gt=0, description="how often the recordings' quota and age limit are applied (also whenever a recording ends)")
    media_main_hall: str = Field("MAIN", description="hall id of the main meeting room: only its devices' stream keys may publish into the main room's application (a hall kiosk's key may not)")
    bundle_check_s: float = Field(1.0, description="how often the collector looks for registry changes to republish bundles")
    attendance_early_s: float = Field(1800.0, ge=0, description="how long before a meeting starts a check-in still counts (the kiosk's own window, HALL_AGENT_MEETING_EARLY_S, should not be wider)")
    late_after_min: int = Field(15, ge=0, le=24 * 60, description="a member checked in more than this many minutes after a meeting's start is late, not present")
    absence_warn_level: int = Field(2, ge=1, description="unexcused absences in a calendar year (all of a member's cells) from which the member is listed with a warning")
    absence_rule_level: int = Field(3, ge=1, description="unexcused absences in a calendar year from which the member is listed under the Party's rule (see docs)")
    low_rate_threshold: float = Field(0.5, ge=0, le=1, description="a cell's page lists the members whose attendance rate is below this")
    auto_close_after_h: float = Field(72.0, gt=0, description="a meeting nobody closed is closed by central this many hours after it ended (closed by 'central (auto)'), freezing its figures")
    rejections_max_rows: int = Field(10_000, ge=100, description="rejected messages kept; beyond it the oldest plain rejections go first, then the oldest alarms (a count of what was dropped is kept)")
    rejections_max_age_days: float = Field(30.0, gt=0, description="plain rejections older than this are dropped (alarms stay until the row cap needs their room)")
    broker_heartbeat_s: float = Field(5.0, gt=0, description="how often central checks that the broker answers (a QoS 1 heartbeat on its own topic)")
    broker_silence_s: float = Field(15.0, gt=0, description="a heartbeat unanswered this long marks the broker unresponsive: device states are shown as unknown")
    device_stale_s: float = Field(60.0, gt=0, description="a kiosk whose last status is older than this is shown as unknown, not online (kiosks report every 15 s)")
    alert_interval_s: float = Field(15.0, gt=0, le=3600, description="how often central evaluates the alert rules")
    alert_boot_grace_s: float = Field(300.0, ge=0, description="no alert about a kiosk that has been up for less than this (a kiosk that just booted has no stream yet and a queue to drain)")
    alert_hold_s: float = Field(120.0, ge=0, description="an alert resolves only after its condition has been clear this long")
    alert_reopen_window_s: float = Field(1800.0, ge=0, description="a condition back within this long of its alert's resolve reopens the same alert, counted, instead of a new one")
    alert_history_days: float = Field(365.0, gt=0, description="resolved alerts and their history are kept this many days")
    alert_smtp_host: str = Field("", description="SMTP server alerts are mailed through; empty = no e-mail")
    alert_smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port (587 with STARTTLS)")
    alert_smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS (verified against the system's CAs) before sending")
    alert_smtp_user: str = Field("", description="SMTP login; empty = none")
    alert_smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password; also read from $CREDENTIALS_DIRECTORY/alert_smtp_password")
    alert_smtp_from: str = Field("hall-central@localhost", description="sender address of alert e-mails")
    alert_smtp_to: str = Field("", description="comma-separated recipients of alert e-mails")
    alert_webhook_url: str = Field("", description="URL that receives each alert's opening and resolve as signed JSON (X-Hall-Signature: sha256=HMAC); empty = no webhook")
    alert_webhook_secret: SecretStr = Field(SecretStr(""), description="HMAC key of the webhook, at least 16 characters; also read from $CREDENTIALS_DIRECTORY/alert_webhook_secret")
    alert_notify_queue: int = Field(200, ge=1, le=100_000, description="notifications waiting per channel; beyond it new ones are dropped and counted")
    alert_notify_retries: int = Field(5, ge=0, le=20, description="retries of a failed notification, with doubling backoff from 2 s (at most 5 min)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, CredentialsDirectorySource(settings_cls), file_secret_settings

    @model_validator(mode="after")
    def _no_unknown_environment(self) -> CentralSettings:
        # extra="forbid" only covers keyword arguments: a misspelt variable would be silently ignored.
        prefix = (self.model_config.get("env_prefix") or "").upper()
        known = {prefix + name.upper() for name in type(self).model_fields}
        unknown = sorted(k for k in os.environ if k.upper().startswith(prefix) and k.upper() not in known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "central.db"

    def allowed_origins(self) -> list[str]:
        """Where staff pages are served from, as browsers write an Origin header."""
        if self.public_origins.strip():
            return [o.strip() for o in self.public_origins.split(",") if o.strip()]
        host = self.http_host.strip()
        if host in LOOPBACK_OR_WILDCARD:
            hosts = ["127.0.0.1", "localhost", "[::1]"]
        else:
            hosts = [f"[{host}]" if ":" in host else host]
        return [f"http://{h}:{self.http_port}" for h in hosts]

    def checked_staff_token(self) -> str:
        """The staff token, or SettingsError when it is empty, short or an obvious placeholder."""
        token = self.staff_token.get_secret_value().strip()
        lowered = token.lower()
        if lowered in PLACEHOLDER_TOKENS or lowered.startswith(("<", "your", "change")) or len(set(token)) < 4:
            raise SettingsError(
                "the staff token is empty or a placeholder: set HALL_CENTRAL_STAFF_TOKEN or "
                "$CREDENTIALS_DIRECTORY/staff_token to a random value (python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise SettingsError(f"the staff token is {len(token)} characters; use at least {MIN_TOKEN_CHARS}")
        return token
