"""`hall provision ...`: the technician's commands on a kiosk: enrol with central, self-test."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from contract.errors import HallError

SELFTEST_FAILED = 3  # enrolled, but the hardware needs attention


def _data_dir_option(fn):  # type: ignore[no-untyped-def]
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="The agent's data directory (default: HALL_AGENT_DATA_DIR or var/agent).",
    )(fn)


def _sync_flag_option(fn):  # type: ignore[no-untyped-def]
    from edge_agent.clock import TIMESYNC_FLAG

    return click.option(
        "--sync-flag", type=click.Path(dir_okay=False, path_type=Path), default=TIMESYNC_FLAG, show_default=True,
        help="File whose presence means the clock is NTP-synchronised (systemd-timesyncd's flag).",
    )(fn)


def _selftest(data_dir: Path | None, sync_flag: Path, as_json: bool) -> bool:
    from edge_agent.clock import SystemClock
    from provisioning.enrol import load_agent_settings
    from provisioning.selftest import run_selftest

    report = run_selftest(load_agent_settings(data_dir), clock=SystemClock(sync_flag=sync_flag))
    click.echo(report.to_json() if as_json else report.text())
    return report.ok


@click.group()
def provision() -> None:
    """Provisioning on the kiosk: enrol with central, then test the hardware."""


@provision.command("enroll")
@click.option("--central", "central_url", required=True,
              help="Central's HTTPS enrolment address, e.g. https://central.example.vn:8443 (http:// is refused).")
@click.option("--token", required=True, help="The one-time enrolment token from `hall central token create`.")
@click.option("--ca-fingerprint", required=True,
              help="SHA-256 fingerprint of central's CA (printed with the token): checked before the token is sent.")
@click.option("--force", is_flag=True, help="Enrol again although this kiosk is enrolled (keeps its device key, new TLS key).")
@click.option("--skip-selftest", is_flag=True, help="Do not run the self-test after enrolling.")
@_data_dir_option
@_sync_flag_option
def enroll(central_url: str, token: str, ca_fingerprint: str, force: bool, skip_selftest: bool,
           data_dir: Path | None, sync_flag: Path) -> None:
    """Make this kiosk's keys, enrol it with central using a one-time TOKEN, write its settings, self-test.

    The private keys are made here and never leave the kiosk. Exit status: 0 enrolled and
    all checks passed, 1 not enrolled, 3 enrolled but the self-test found problems.
    """
    from importlib.metadata import PackageNotFoundError, version

    from provisioning.enrol import default_data_dir
    from provisioning.enrol import enroll as do_enroll

    try:
        software = version("hall-kiosk")
    except PackageNotFoundError:
        software = ""
    try:
        result = do_enroll(central_url=central_url, token=token, data_dir=data_dir or default_data_dir(),
                           force=force, ca_fingerprint=ca_fingerprint, software_version=software)
    except HallError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"enrolled kiosk {result.device} in hall {result.hall}")
    click.echo(f"  broker {result.broker[0]}:{result.broker[1]} (TLS), certificate valid until {result.certificate_expires}")
    click.echo(f"  central's CA fingerprint {result.ca_fingerprint}")
    click.echo(f"  settings written to {result.env_file}")
    if result.skipped_settings:
        click.echo(f"  settings from central this kiosk does not know (ignored): {', '.join(result.skipped_settings)}", err=True)
    if skip_selftest:
        return
    click.echo("")
    try:
        ok = _selftest(result.data_dir, sync_flag, as_json=False)
    except HallError as exc:
        raise click.ClickException(str(exc)) from None
    if not ok:
        sys.exit(SELFTEST_FAILED)


@provision.command("selftest")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON for machines.")
@_data_dir_option
@_sync_flag_option
def selftest(as_json: bool, data_dir: Path | None, sync_flag: Path) -> None:
    """Check camera, card reader, lights and buzzer, broker (TLS), clock, disk and outbox; exit 1 on any failure."""
    try:
        ok = _selftest(data_dir, sync_flag, as_json)
    except HallError as exc:
        raise click.ClickException(str(exc)) from None
    if not ok:
        sys.exit(1)
