"""A kiosk process for the fault suite: the real Agent (outbox, uplink, roster, check-in flow)
with an injected face verifier and clock, checking members in as fast as its record path allows.

Run as a process so the tests can SIGKILL it: python -m tests.faults.kiosk_driver --help.
Prints one JSON line per milestone on stdout. After the last member it keeps running (the
uplink drains) until SIGTERM. A restarted driver resumes: members already checked in get
"already" from the outbox and make no second record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from edge_agent.checkin import Outcome
from edge_agent.clock import SystemClock
from edge_agent.service import Agent
from edge_agent.settings import AgentSettings
from hardware.events import CardEvent


def card_of(i: int) -> str:
    return f"04{i:012X}"


@dataclass
class Verdict:
    status: str = "match"
    distance: float = 0.2
    threshold: float = 0.5


class AlwaysMatch:
    """The face check is not what this suite tests: every face matches."""

    alive = True

    def verify(self, templates, timeout=5.0):
        return Verdict()

    def stop(self):
        pass


class JumpingClock(SystemClock):
    """The system clock plus an offset the driver moves, like an RTC-less Pi's clock being set."""

    def __init__(self):
        super().__init__()
        self.offset = timedelta(0)
        self.forced_unsynced = False

    def now(self):
        return super().now() + self.offset

    def synced(self):
        return not self.forced_unsynced and super().synced()


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


async def main(args: argparse.Namespace) -> None:
    settings = AgentSettings(
        data_dir=args.data_dir, mqtt_port=args.mqtt_port, central_public_key=args.central_key,
        topic_prefix=args.prefix, camera="0", mock_gpio=True, http_port=args.http_port, verdict_seconds=0.01,
        mqtt_keepalive=args.keepalive, min_free_bytes=0, outbox_max_mb=args.outbox_max_mb, send_window=args.window,
    )
    clock = JumpingClock()
    agent = Agent(settings, face=AlwaysMatch(), clock=clock)
    run = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, agent.request_stop)
    while agent.checkin is None or agent.roster.bundle is None:
        await asyncio.sleep(0.05)
    emit(ready=True, device=agent.identity.device_id, head=agent.outbox.head()[0])
    outcomes: Counter[str] = Counter()
    i = 0
    while i < args.members:
        if args.clock_jumps and i == args.members // 3:
            clock.offset, clock.forced_unsynced = timedelta(hours=-1), True
            emit(clock="back 1 h, unsynced", at=i)
        if args.clock_jumps and i == 2 * args.members // 3:
            clock.offset, clock.forced_unsynced = timedelta(days=1), False
            emit(clock="ahead 1 day", at=i)
        result = await agent.checkin.handle(CardEvent(kind="member_card", value=card_of(i), source="driver"))
        outcomes[result.outcome.value] += 1
        if result.outcome is Outcome.DISK_FULL:
            if outcomes["disk_full"] == 1:
                emit(disk_full=True, at=i, text=agent.display.state["text"], faults=agent.current_faults())
            await asyncio.sleep(0.2)  # the member is told to wait; try again once central has acked
            continue
        if result.outcome not in (Outcome.ACCEPTED, Outcome.ALREADY):
            emit(error=result.outcome.value, at=i, detail=result.detail)
        if args.pace:
            await asyncio.sleep(args.pace)
        i += 1
    emit(done=True, head=agent.outbox.head()[0], outcomes=dict(outcomes))
    await run


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--central-key", required=True)
    parser.add_argument("--prefix", default="hall/v1")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--http-port", type=int, default=0, help="kiosk page port (0: any free one)")
    parser.add_argument("--keepalive", type=int, default=5)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--outbox-max-mb", type=float, default=512)
    parser.add_argument("--clock-jumps", action="store_true")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between check-ins")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="driver %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parser.parse_args()))
