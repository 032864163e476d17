"""`hall agent ...`: the kiosk service."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

import click


@click.group()
def agent() -> None:
    """The kiosk service (edge agent). Configured by HALL_AGENT_* variables."""


@agent.command("run")
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def run(log_level: str) -> None:
    """Run the kiosk: readers, camera, face worker, outbox, uplink and the kiosk page."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge_agent.service import Agent, NotEnrolled
    from provisioning.enrol import load_agent_settings

    try:
        # HALL_AGENT_* variables, over what enrolment wrote into <data_dir>/agent.env
        agent_ = Agent(load_agent_settings())
    except NotEnrolled as exc:
        click.echo(f"hall agent: {exc}", err=True)
        sys.exit(2)
    # SIGTERM (systemd, `hall demo`, kill) stops the agent the way Ctrl-C does: through close(),
    # which stops the streamer's ffmpeg and the face worker. uvicorn takes SIGTERM over while it
    # serves and passes it on here afterwards; before and after that, this handler is the one.
    signal.signal(signal.SIGTERM, lambda *_: agent_.request_stop())
    try:
        asyncio.run(agent_.run())
    except KeyboardInterrupt:
        pass


@agent.command("id")
def identity() -> None:
    """Print this kiosk's device id and public key as JSON (creates the key on first use)."""
    from edge_agent.identity import DeviceIdentity
    from edge_agent.settings import AgentSettings

    ident = DeviceIdentity(AgentSettings().data_dir)
    click.echo(json.dumps({"device": ident.device_id, "public_key": ident.public_key}))
