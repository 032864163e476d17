"""MQTT uplink: sends the outbox in order, applies central's acks, receives bundles.

paho keeps unsent messages in memory only, so the outbox is the queue of record:
after any reconnect, sending restarts from the last acknowledged sequence number
(central treats a resend as a no-op). At most ``window`` records are in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from nacl.signing import VerifyKey

from contract import QOS, RETAIN, Ack, Kind, Status, Topics, decode_signed, encode_status
from contract.commands import ResendResult
from contract.errors import ContractError

from .attempts import AttemptQueue
from .outbox import Outbox

log = logging.getLogger("edge_agent.uplink")

RESEND_AFTER_S = 10.0
ATTEMPTS_IN_FLIGHT = 16  # refused attempts sent and not yet PUBACKed; records go first
DUP_ACKS_RESEND = 3  # the same ack this many times in a row with records in flight: a gap at central  # no ack progress for this long with records in flight: send them again


class Uplink:
    def __init__(
        self,
        *,
        outbox: Outbox,
        device_id: str,
        central_key: VerifyKey,
        host: str,
        port: int,
        topics: Topics,
        status: Callable[[], Status],
        on_bundle: Callable[[bytes], None],
        keepalive: int = 30,
        window: int = 64,
        status_interval_s: float = 15.0,
        client_factory: Callable[..., mqtt.Client] = mqtt.Client,
        tls: tuple[str, str, str] | None = None,
        attempts: AttemptQueue | None = None,
        on_command: Callable[[bytes], None] | None = None,
    ):
        self.outbox, self.device_id, self.topics = outbox, device_id, topics
        self._central_key = central_key
        self._status, self._on_bundle = status, on_bundle
        self._on_command = on_command  # edge_agent/commands.py: checks and queues, never runs it here
        self._window, self._status_interval = window, status_interval_s
        self._host, self._port, self._keepalive = host, port, keepalive
        self._wake = threading.Condition()
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._sent_upto = 0
        self._last_progress = time.monotonic()
        self._dup_acks = 0
        self.connected = False
        self.last_ack_seq: int | None = None
        self.last_ack_at: float | None = None
        self.rejected_messages = 0
        # Refused attempts (edge_agent/attempts.py): deleted from their queue on the broker's PUBACK.
        self.attempts = attempts
        self._attempt_mids: dict[int, int] = {}  # message id -> attempt seq, in flight
        self._early_pubacks: set[int] = set()  # PUBACKs that arrived before publish() returned their mid
        self._attempts_sent_upto = 0
        self.client = client_factory(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"kiosk-{device_id}",
            clean_session=True,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        if tls:
            ca, cert, key = tls
            self.client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        # paho's own cap (20 by default) would otherwise serialise our window behind it.
        self.client.max_inflight_messages_set(window)
        self.client.will_set(
            topics.status(device_id),
            encode_status(Status(device=device_id, state="offline")),
            qos=QOS[Kind.STATUS],
            retain=RETAIN[Kind.STATUS],
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        outbox.listeners.append(self.nudge)
        if attempts is not None:
            attempts.listeners.append(self.nudge)
        self._thread = threading.Thread(target=self._run, name="uplink-sender", daemon=True)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self.client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.nudge()
        self._thread.join(5)
        if self.connected:
            info = self.client.publish(
                self.topics.status(self.device_id),
                encode_status(Status(device=self.device_id, state="offline")),
                qos=1,
                retain=True,
            )
            info.wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def in_flight(self) -> int:
        return max(0, self._sent_upto - self.outbox.acked_seq())

    def nudge(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- paho callbacks (network thread) ------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused connection: %s", reason_code)
            return
        log.info("connected to %s:%s", self._host, self._port)
        client.subscribe(self.topics.device_subscriptions(self.device_id))
        with self._wake:
            self.connected = True
            # Whatever was in flight before the break may be lost: resend from the ack.
            self._sent_upto = self.outbox.acked_seq()
            self._last_progress = time.monotonic()
            # Attempts without a PUBACK may be lost with the old connection: send them again (central keeps one).
            self._attempt_mids, self._early_pubacks, self._attempts_sent_upto = {}, set(), 0
            self._wake.notify_all()
        self.publish_status()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self.connected:
            log.warning("disconnected: %s", reason_code)
        self.connected = False

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            device, kind = self.topics.parse(message.topic)
            if device != self.device_id:
                raise ContractError(f"message for another device on {message.topic}")
            if kind is Kind.ACK:
                ack: Ack = decode_signed(self._central_key, message.payload, Ack)
                if ack.device != self.device_id:
                    raise ContractError("ack names another device")
                self._apply_ack(ack)
            elif kind is Kind.BUNDLE:
                self._on_bundle(message.payload)
            elif kind is Kind.COMMAND and self._on_command is not None:
                self._on_command(message.payload)
            else:
                raise ContractError(f"unexpected {kind.value} message")
        except Exception as exc:  # a bad message must never kill the network thread
            self.rejected_messages += 1
            log.warning("rejected message on %s: %s", message.topic, exc)

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        if self.attempts is None:
            return
        with self._wake:
            seq = self._attempt_mids.pop(mid, None)
            if seq is None:
                if len(self._early_pubacks) < 4 * ATTEMPTS_IN_FLIGHT:  # also a record's or status's mid: bounded
                    self._early_pubacks.add(mid)
                return
            self._wake.notify_all()
        try:
            self.attempts.delivered(seq)
        except Exception:  # it is sent again later; central keeps one
            log.exception("could not forget delivered attempt %d", seq)

    def _apply_ack(self, ack: Ack) -> None:
        if ack.seq > 0:
            self.outbox.acknowledge(ack.seq, ack.hash)
        with self._wake:
            repeated = ack.seq == self.last_ack_seq and self._sent_upto > ack.seq
            self._dup_acks = self._dup_acks + 1 if repeated else 0
            if self._dup_acks >= DUP_ACKS_RESEND:
                # Central re-acks the same head when it holds records after a gap: one of ours
                # was lost on the way (e.g. dropped by a broker queue). Resend now, not after
                # RESEND_AFTER_S.
                log.info("repeated ack %d with %d in flight: resending from %d", ack.seq, self._sent_upto - ack.seq, ack.seq + 1)
                self._sent_upto, self._dup_acks = ack.seq, 0
            if ack.seq != self.last_ack_seq:
                self._last_progress = time.monotonic()
            self.last_ack_seq, self.last_ack_at = ack.seq, time.time()
            self._sent_upto = max(self._sent_upto, ack.seq)
            self._wake.notify_all()

    # -- sender thread ------------------------------------------------------------

    def publish_status(self) -> None:
        # Built and handed to paho under one lock: the sender thread's periodic status and the one sent when the
        # roster arrives (network thread) would otherwise race, and a status built before the roster came could
        # reach central after the newer one, leaving "no roster" on the fleet page until the next period.
        with self._status_lock:
            if not self.connected:
                return
            try:
                payload = encode_status(self._status())
            except Exception:
                log.exception("building status failed")
                return
            self.client.publish(self.topics.status(self.device_id), payload, qos=QOS[Kind.STATUS], retain=RETAIN[Kind.STATUS])

    def send_reply(self, payload: bytes) -> None:
        """A command's signed reply, on this kiosk's own reply topic (QoS 1; paho holds it across a short break)."""
        self.client.publish(self.topics.command_reply(self.device_id), payload, qos=QOS[Kind.COMMAND_REPLY],
                            retain=RETAIN[Kind.COMMAND_REPLY])

    def resend_from(self, from_seq: int) -> ResendResult:
        """Send again, through the usual window, every record still held from ``from_seq`` on.

        The outbox holds exactly the records after central's last ack, so earlier ones are gone
        from the kiosk; central keeps one copy of each record it is sent twice.
        """
        acked, head = self.outbox.acked_seq(), self.outbox.head()[0]
        start = min(max(from_seq - 1, acked), head)
        with self._wake:
            self._sent_upto = min(self._sent_upto, start)
            self._last_progress = time.monotonic()
            self._wake.notify_all()
        count = head - start
        log.info("resend asked from %d: sending %d record(s) again (central acknowledged up to %d)", from_seq, count, acked)
        return ResendResult(from_seq=from_seq, acked_seq=acked, head_seq=head, resent=count,
                            first=start + 1 if count else None, last=head if count else None)

    def _run(self) -> None:
        next_status = 0.0
        while not self._stop.is_set():
            try:
                if self.connected:
                    self._send_some()
                    self._send_attempts()
                    if time.monotonic() >= next_status:
                        self.publish_status()
                        next_status = time.monotonic() + self._status_interval
            except Exception:
                log.exception("uplink sender error")
            with self._wake:
                self._wake.wait(timeout=1.0)

    def _send_some(self) -> None:
        acked = self.outbox.acked_seq()
        with self._wake:
            if self._sent_upto > acked and time.monotonic() - self._last_progress > RESEND_AFTER_S:
                log.info("no ack progress for %.0fs: resending from %d", RESEND_AFTER_S, acked + 1)
                self._sent_upto = acked
                self._last_progress = time.monotonic()
            room = self._window - (self._sent_upto - acked)
            start = self._sent_upto
        if room <= 0:
            return
        topic = self.topics.attendance(self.device_id)
        for item in self.outbox.after(start, room):
            info = self.client.publish(topic, item.payload, qos=QOS[Kind.ATTENDANCE], retain=RETAIN[Kind.ATTENDANCE])
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected any more; on_connect resets the pointer
            with self._wake:
                self._sent_upto = max(self._sent_upto, item.seq)

    def _send_attempts(self) -> None:
        if self.attempts is None:
            return
        with self._wake:
            # Only a PUBACK racing the publish() below matters; older unknown ones (records', status') go.
            self._early_pubacks.clear()
            room, after = ATTEMPTS_IN_FLIGHT - len(self._attempt_mids), self._attempts_sent_upto
        if room <= 0:
            return
        topic = self.topics.attempt(self.device_id)
        for seq, payload in self.attempts.unsent(after, room):
            info = self.client.publish(topic, payload, qos=QOS[Kind.ATTEMPT], retain=RETAIN[Kind.ATTEMPT])
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected any more; on_connect starts over
            with self._wake:
                self._attempts_sent_upto = max(self._attempts_sent_upto, seq)
                if info.mid in self._early_pubacks:
                    self._early_pubacks.discard(info.mid)
                    early = True
                else:
                    self._attempt_mids[info.mid] = seq
                    early = False
            if early:
                self.attempts.delivered(seq)
