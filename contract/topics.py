"""MQTT topics, QoS and retain rules: the only place topic strings are built.

Both the agent's uplink and central's collector subscribe through
``device_subscriptions`` / ``central_subscriptions``, and a test checks that
each side subscribes to exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import ContractError

DEFAULT_PREFIX = "hall/v1"


class Kind(str, Enum):
    ATTENDANCE = "attendance"  # device -> central, one signed record per message
    ACK = "ack"  # central -> device, retained, highest seq stored with an unbroken chain
    STATUS = "status"  # device -> central, retained heartbeat; last will says offline
    BUNDLE = "bundle"  # central -> device, retained signed roster + schedule + templates
    ATTEMPT = "attempt"  # device -> central, one signed refused check-in attempt per message (contract.attempts)
    COMMAND = "command"  # central -> device, signed remote action, not retained: an offline kiosk misses it (contract.commands)
    COMMAND_REPLY = "command_reply"  # device -> central, the kiosk's signed answer to a command


QOS: dict[Kind, int] = {Kind.ATTENDANCE: 1, Kind.ACK: 1, Kind.STATUS: 1, Kind.BUNDLE: 1, Kind.ATTEMPT: 1, Kind.COMMAND: 1,
                        Kind.COMMAND_REPLY: 1}
RETAIN: dict[Kind, bool] = {
    Kind.ATTENDANCE: False,
    Kind.ACK: True,
    Kind.STATUS: True,
    Kind.BUNDLE: True,
    Kind.ATTEMPT: False,
    Kind.COMMAND: False,
    Kind.COMMAND_REPLY: False,
}
# Who publishes each kind; a device publishes only under its own id.
PUBLISHER: dict[Kind, str] = {
    Kind.ATTENDANCE: "device",
    Kind.ACK: "central",
    Kind.STATUS: "device",
    Kind.BUNDLE: "central",
    Kind.ATTEMPT: "device",
    Kind.COMMAND: "central",
    Kind.COMMAND_REPLY: "device",
}


@dataclass(frozen=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.endswith("/"):
            raise ContractError(f"bad topic prefix {self.prefix!r}")

    def topic(self, device: str, kind: Kind) -> str:
        if not device or any(c in device for c in "/+#"):
            raise ContractError(f"bad device id {device!r}")
        return f"{self.prefix}/{device}/{kind.value}"

    def attendance(self, device: str) -> str:
        return self.topic(device, Kind.ATTENDANCE)

    def ack(self, device: str) -> str:
        return self.topic(device, Kind.ACK)

    def status(self, device: str) -> str:
        return self.topic(device, Kind.STATUS)

    def bundle(self, device: str) -> str:
        return self.topic(device, Kind.BUNDLE)

    def attempt(self, device: str) -> str:
        return self.topic(device, Kind.ATTEMPT)

    def command(self, device: str) -> str:
        return self.topic(device, Kind.COMMAND)

    def command_reply(self, device: str) -> str:
        return self.topic(device, Kind.COMMAND_REPLY)

    def central_heartbeat(self) -> str:
        """Central's own topic: it publishes QoS 1 here to learn whether the broker still answers (no one subscribes)."""
        return f"{self.prefix}/central/heartbeat"

    def device_subscriptions(self, device: str) -> list[tuple[str, int]]:
        return [(self.topic(device, k), QOS[k]) for k in Kind if PUBLISHER[k] == "central"]

    def central_subscriptions(self) -> list[tuple[str, int]]:
        return [(f"{self.prefix}/+/{k.value}", QOS[k]) for k in Kind if PUBLISHER[k] == "device"]

    def parse(self, topic: str) -> tuple[str, Kind]:
        """Split a concrete topic into (device id, kind); ContractError if it is not ours."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise ContractError(f"topic {topic!r} is not under {self.prefix!r}")
        parts = topic[len(head):].split("/")
        if len(parts) != 2 or not parts[0]:
            raise ContractError(f"topic {topic!r} is not {self.prefix}/<device>/<kind>")
        try:
            return parts[0], Kind(parts[1])
        except ValueError:
            raise ContractError(f"unknown message kind {parts[1]!r} in {topic!r}") from None
