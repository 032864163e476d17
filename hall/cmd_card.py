"""`hall card`: parse CCCD QR payloads and watch the card readers (technician tools)."""

from __future__ import annotations

import json
import sys
import threading
import time

import click

EXIT_INVALID = 2


@click.group()
def card() -> None:
    """Card and CCCD QR tools.

    \b
    Examples:
      hall card parse '001099012345|123456789|Nguyễn Văn An|15081999|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|20042021'
      echo "$PAYLOAD" | hall card parse -
      hall card listen --pn532 /dev/ttyS0 --qr /dev/ttyACM0
    """


@card.command("parse")
@click.argument("text")
def parse(text: str) -> None:
    """Parse a CCCD QR payload TEXT ('-' reads it from stdin) and print its fields as JSON.

    Exits 0 when valid; prints 'invalid CCCD QR: <reason>' on stderr and exits 2 otherwise.
    """
    from hardware.cccd import parse_cccd
    from hardware.errors import CccdError

    if text == "-":
        text = sys.stdin.read()
    try:
        parsed = parse_cccd(text)
    except CccdError as e:
        click.echo(f"invalid CCCD QR: {e.reason}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(json.dumps(parsed.to_json(), ensure_ascii=False, indent=2))


@card.command("listen")
@click.option("--pn532", "pn532_url", metavar="PORT", help="PN532 serial port or pyserial URL (e.g. /dev/ttyS0).")
@click.option("--qr", "qr_url", metavar="PORT", help="QR/barcode scanner serial port (e.g. /dev/ttyACM0).")
@click.option("--baudrate", default=115200, show_default=True, help="Baud rate of both ports.")
@click.option("--seconds", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C).")
def listen(pn532_url: str | None, qr_url: str | None, baudrate: int, seconds: float | None) -> None:
    """Print one JSON line per card tap or QR scan (QR payloads parsed as CCCD), to check the wiring."""
    from hardware.cccd import parse_cccd
    from hardware.errors import CccdError, ReaderError
    from hardware.events import CardEvent
    from hardware.pn532 import Pn532Reader
    from hardware.qr_scanner import QrScanner
    from hardware.serial_ports import open_serial

    if not (pn532_url or qr_url):
        raise click.UsageError("give --pn532 and/or --qr")
    lock = threading.Lock()

    def emit(record: dict) -> None:
        with lock:
            click.echo(json.dumps(record, ensure_ascii=False))

    def on_event(event: CardEvent) -> None:
        record: dict = {"kind": event.kind, "value": event.value, "source": event.source}
        if event.kind == "cccd_qr":
            try:
                record["cccd"] = parse_cccd(event.value).to_json()
            except CccdError as e:
                record["invalid"] = e.reason
        emit(record)

    def on_reject(raw: bytes, reason: str) -> None:
        emit({"kind": "rejected", "reason": reason, "bytes": len(raw)})

    workers: list = []
    try:
        if pn532_url:
            workers.append(Pn532Reader(port=open_serial(pn532_url, baudrate=baudrate), on_card=on_event))
        if qr_url:
            workers.append(QrScanner(port=open_serial(qr_url, baudrate=baudrate), on_scan=on_event, on_reject=on_reject))
    except ReaderError as e:
        raise click.ClickException(str(e)) from e
    for w in workers:
        w.start()
    click.echo(f"listening on {', '.join(w.source for w in workers)}", err=True)
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        for w in workers:
            w.stop()
            w.port.close()
        for w in workers:
            click.echo(f"{w.source}: {json.dumps(w.stats)}", err=True)
