"""The collector: MQTT in, verified records stored, signed acks and bundles out.

paho's network thread only queues messages; one worker thread verifies and
stores them in batches, commits, then publishes the acks, and only then
acknowledges (PUBACK) the messages to the broker (``manual_ack``). With a
persistent session (``clean_session=False``) the broker keeps records that
arrive while central is down, and redelivers any whose PUBACK was not sent, so
a crash between receipt and commit loses nothing.

It also watches its own link to the broker (``broker_link``): kiosk states are
only as fresh as that link, so the API and page show it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from contract import Ack, Topics, encode_signed
from contract.errors import ContractError
from contract.topics import QOS, RETAIN, Kind

from . import rejection_log
from .broker_link import BrokerLink
from .bundles import publish_bundles
from .ingest import Ingest, head, reject
from .settings import CentralSettings
from .store import Store, utc_now

log = logging.getLogger("central.collector")

BATCH_MAX = 1024  # one commit (fsync) per batch; a batch is what the broker has in flight


@dataclass(frozen=True)
class _Incoming:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    retained: bool


def process_batch(ingest: Ingest, batch: list[tuple[str, bytes, bool]]) -> set[str]:
    """Handle (topic, payload, retained) messages in one committed transaction; return the devices to ack.

    The commit (synchronous=FULL) comes before the caller publishes any ack. A
    message that raises must undo only itself (and be kept as a rejection): the
    batch is first run straight through, and only if something raises is it rolled
    back and run again with a savepoint per message — savepoints cost about 5 %
    of the ingest rate, and exceptions are rare.
    """
    counts = ingest.counts.copy()
    try:
        return _run_batch(ingest, batch, isolate=False)
    except Exception:
        log.warning("a batch of %d message(s) raised; running it again message by message", len(batch))
        ingest.counts = counts  # the rolled-back run counted nothing that stayed
        return _run_batch(ingest, batch, isolate=True)


def _run_batch(ingest: Ingest, batch: list[tuple[str, bytes, bool]], *, isolate: bool) -> set[str]:
    store = ingest.store
    to_ack: set[str] = set()
    with store.transaction(), ingest.batch(defer_chain=not isolate):
        for topic, payload, retained in batch:
            if not isolate:
                device = ingest.handle(topic, payload, retained=retained)
                if device:
                    to_ack.add(device)
                continue
            try:
                with store.savepoint():
                    device = ingest.handle(topic, payload, retained=retained)
            except Exception as exc:
                ingest.forget()
                log.exception("internal error on %s", topic)
                # Not acknowledged, so the kiosk resends it and it is stored once central can handle it;
                # meanwhile one alarm, not one per resend, says which device waits.
                reason = f"internal error: {type(exc).__name__}: {exc}"
                if not rejection_log.seen_last(store, topic, reason, payload):
                    reject(store, topic, _device_of(ingest, topic), reason, payload, alarm=True)
                device = None
            if device:
                to_ack.add(device)
    return to_ack


def _device_of(ingest: Ingest, topic: str) -> str | None:
    try:
        return ingest.topics.parse(topic)[0]
    except ContractError:
        return None


class Collector:
    def __init__(
        self,
        settings: CentralSettings,
        store: Store,
        *,
        key: SigningKey,
        box: SecretBox,
        client_factory: type[mqtt.Client] = mqtt.Client,
    ):
        self.settings, self.store, self.key, self.box = settings, store, key, box
        self.topics = Topics(settings.topic_prefix)
        # Exactly what the contract says central listens to; a test compares both sides.
        self.subscriptions: list[tuple[str, int]] = self.topics.central_subscriptions()
        self.ingest = Ingest(store, self.topics, attendance_early_s=settings.attendance_early_s)
        self.connected = False
        self.link = BrokerLink(settings.broker_heartbeat_s, settings.broker_silence_s)
        self.published_bundle_version: int | None = None
        self._inbox: queue.Queue[_Incoming | str] = queue.Queue()
        self._generation = 0  # bumps per connection: a PUBACK must not reach a later session's message id
        self._stop = threading.Event()
        self._retry: list[_Incoming] = []
        self._worker: threading.Thread | None = None
        self.client = client_factory(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        if settings.mqtt_tls_ca and settings.mqtt_tls_cert and settings.mqtt_tls_key:
            # mutual TLS with central's own certificate (CN 'central', its identity in the broker's ACL)
            self.client.tls_set(ca_certs=str(settings.mqtt_tls_ca), certfile=str(settings.mqtt_tls_cert),
                                keyfile=str(settings.mqtt_tls_key))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    # paho's thread -----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the connection: %s", reason)
            return
        self._generation += 1
        self.connected = True
        self.link.connected()
        client.subscribe(self.subscriptions)
        self._inbox.put("connected")
        log.info("connected to %s:%d, subscribed to %s", self.settings.mqtt_host, self.settings.mqtt_port, [t for t, _ in self.subscriptions])

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object) -> None:
        self.connected = False
        self.link.disconnected(f"disconnected from the broker ({reason})")
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting with backoff", reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self.link.disconnected(f"cannot reach the broker at {self.settings.mqtt_host}:{self.settings.mqtt_port}")
        log.warning("cannot reach the broker at %s:%d; retrying with backoff", self.settings.mqtt_host, self.settings.mqtt_port)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, properties: object) -> None:
        self.link.answered()  # any PUBACK: the broker is processing our session

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put(_Incoming(self._generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload), bool(msg.retain)))

    # lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="central-collector", daemon=True)
        self._worker.start()
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, self.settings.mqtt_keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put("stop")
        if self._worker:
            self._worker.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    def stats(self) -> dict[str, object]:
        return {"connected": self.connected, "queued": self._inbox.qsize(), "broker": self.link.state(), **dict(self.ingest.counts)}

    # worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        last_check = 0.0
        while not self._stop.is_set():
            try:
                first = self._inbox.get(timeout=min(self.settings.bundle_check_s, self.settings.broker_heartbeat_s))
            except queue.Empty:
                first = None
            self._heartbeat()
            batch, self._retry = self._retry, []
            republish = False
            for item in self._drain(first):
                if item == "connected":
                    republish = True
                elif isinstance(item, _Incoming):
                    batch.append(item)
            if batch:
                try:
                    self._process(batch)
                except Exception:  # e.g. disk full: nothing was acknowledged, so keep the batch and retry
                    log.exception("collector batch of %d message(s) failed; retrying", len(batch))
                    self._retry = batch
                    time.sleep(0.5)
            try:
                if republish:
                    self._republish_all()
                elif time.monotonic() - last_check >= self.settings.bundle_check_s:
                    last_check = time.monotonic()
                    if self.connected and self.store.bundle_version() != self.published_bundle_version:
                        self._publish_bundles()
            except Exception:  # the next check (or reconnect) publishes again
                log.exception("publishing acks or bundles failed")
                self.published_bundle_version = None

    def _heartbeat(self) -> None:
        if self.link.heartbeat_due():
            self.link.heartbeat_sent()
            self.client.publish(self.topics.central_heartbeat(), utc_now().encode(), qos=1, retain=False)

    def _drain(self, first: _Incoming | str | None) -> list[_Incoming | str]:
        items: list[_Incoming | str] = [] if first is None else [first]
        while len(items) < BATCH_MAX:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _process(self, batch: list[_Incoming]) -> None:
        to_ack = process_batch(self.ingest, [(m.topic, m.payload, m.retained) for m in batch])
        # Committed: now the acks may claim these records, and the broker may forget the messages.
        for device in sorted(to_ack):
            self.publish_ack(device)
        for msg in batch:
            if msg.qos > 0 and msg.generation == self._generation:
                self.client.ack(msg.mid, msg.qos)

    def signed_ack(self, device: str) -> tuple[Ack, bytes]:
        h = head(self.store, device)
        ack = Ack(device=device, seq=h.seq, hash=h.hash, at=utc_now())
        return ack, encode_signed(self.key, ack)

    def publish_ack(self, device: str) -> Ack:
        ack, payload = self.signed_ack(device)
        self.client.publish(self.topics.ack(device), payload, qos=QOS[Kind.ACK], retain=RETAIN[Kind.ACK])
        return ack

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def _publish_bundles(self) -> None:
        version = self.store.bundle_version()
        publish_bundles(self.store, self.topics, self._publish, key=self.key, box=self.box)
        self.published_bundle_version = version

    def _republish_all(self) -> None:
        # Retained messages survive on a persistent broker, but not on one that lost its store.
        for r in self.store.rows("SELECT c.device FROM chain c JOIN devices d ON d.id = c.device WHERE d.revoked_at IS NULL"):
            self.publish_ack(r["device"])
        self._publish_bundles()
