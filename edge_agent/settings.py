"""Settings of the kiosk service (`HALL_AGENT_*` environment variables).

Secrets (the device key) never live in settings: the key is a 0600 file in the
data directory, made on the device and never copied off it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import DEFAULT_PREFIX


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HALL_AGENT_", extra="forbid")

    data_dir: Path = Field(Path("var/agent"), description="writable data directory: device key, outbox, bundle")
    hall: str = Field("", description="hall this kiosk stands in (informational; the bundle is authoritative)")
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host")
    mqtt_port: int = Field(1883, description="MQTT broker port")
    mqtt_keepalive: int = Field(30, description="MQTT keepalive seconds; a dead link is noticed after 1.5x this")
    mqtt_tls_ca: Path | None = Field(None, description="central's CA certificate; with the two below, the broker is reached over mutual TLS")
    mqtt_tls_cert: Path | None = Field(None, description="this kiosk's client certificate (CN = device id), from enrolment")
    mqtt_tls_key: Path | None = Field(None, description="this kiosk's TLS private key (0600, made on the device)")
    topic_prefix: str = Field(DEFAULT_PREFIX, description="MQTT topic prefix shared with central")
    central_public_key: str = Field("", description="central's Ed25519 public key (base64url); acks and bundles must verify against it")
    card_reader: str = Field("", description="serial port of the PN532 NFC reader (path or pyserial URL); empty = none")
    qr_scanner: str = Field("", description="serial port of the QR scanner (path or pyserial URL); empty = none")
    camera: str = Field("0", description="camera source: index, /dev/videoN, file, URL, folder:/dir or still:/file")
    qr_camera: bool | None = Field(None, description="decode the CCCD's QR shown to the camera (card kind cccd_camera); default on when no serial QR scanner is configured")
    face_threshold: float | None = Field(None, description="face distance at or under which faces match; default from edge_agent.face")
    face_fresh_window_s: float = Field(1.0, description="how old a pre-computed face encoding may be when a card is tapped")
    face_restart_backoff_s: float = Field(1.0, description="a dead face worker is restarted after this long, doubling with each restart in the window")
    face_restart_backoff_max_s: float = Field(30.0, description="longest wait before restarting the face worker")
    face_restart_budget: int = Field(5, description="restarts of the face worker allowed per window; past it the worker stays down (a fault) until the agent restarts")
    face_restart_window_s: float = Field(600.0, description="the face worker's restart budget window, seconds")
    liveness: bool = Field(True, description="refuse a face without evidence of a live person (blinks or 3-D head motion): a photo or a screen is not a member")
    face_wait_s: float = Field(3.0, ge=0, description="after a tap, how long the kiosk waits for a face looking at the camera (and for liveness evidence) before refusing")
    override_pin_attempts: int = Field(5, ge=1, description="wrong secretary PINs allowed before the secretary override locks")
    override_lockout_s: float = Field(300.0, gt=0, description="how long the secretary override stays locked after too many wrong PINs")
    green_pin: str = Field("GPIO17", description="GPIO pin of the green LED")
    red_pin: str = Field("GPIO27", description="GPIO pin of the red LED")
    buzzer_pin: str = Field("GPIO22", description="GPIO pin of the buzzer")
    mock_gpio: bool = Field(False, description="use gpiozero's MockFactory (no real pins: demo and tests)")
    http_host: str = Field("127.0.0.1", description="kiosk page address: loopback only, the page is for the kiosk's own screen")
    http_port: int = Field(8080, description="kiosk page port")
    verdict_seconds: float = Field(8.0, gt=0, description="seconds a verdict stays on the page (long enough to read three lines aloud); the next tap replaces it at once")
    time_zone: str = Field("Asia/Ho_Chi_Minh", description="the hall's IANA time zone: every time on the kiosk page is local to it")
    hall_name: str = Field("", description="the hall's name on the idle screen (the bundle carries only its id, shown when this is empty)")
    meeting_early_s: int = Field(1800, description="check-in opens this many seconds before a meeting starts")
    min_free_bytes: int = Field(20 * 1024 * 1024, description="refuse new check-ins below this much free disk in data_dir")
    outbox_max_mb: float = Field(512.0, description="the outbox file never grows past this; check-ins are refused (and said so) beyond it")
    stream_source: str = Field("", description="what the streamer captures: '' (no streaming), 'v4l2:/dev/video0+alsa:default', 'file:/path.mp4' (looped) or 'lavfi' (test pattern)")
    stream_ingest_url: SecretStr = Field(SecretStr(""), description="the meeting's ingest URL with this kiosk's stream key (rtmp:// or srt://); empty = record locally only")
    stream_dir: Path | None = Field(None, description="local recording segments (default: data_dir/recordings)")
    stream_quota_mb: float = Field(2048.0, description="disk the local recording may use; oldest segments go first, and the status says so")
    stream_encoder: str = Field("auto", description="'auto' (h264_v4l2m2m when it works, else libx264), or an ffmpeg encoder name")
    main_room_hls_url: str = Field("", description="HLS URL of the main meeting room, played full screen at /main-room")
    send_window: int = Field(512, description="records in flight (sent, not yet acknowledged) at most; keep under the broker's max_queued_messages")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Ho_Chi_Minh)") from exc
        return value

    @field_validator("http_host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        # The page shows members' names and verdicts: it is for the kiosk's own screen only.
        if value != "localhost" and not ipaddress.ip_address(value).is_loopback:
            raise ValueError(f"the kiosk page must listen on a loopback address, not {value}")
        return value
