"""`hall` — subcommands are defined in hall/cmd_*.py and imported lazily so that
`hall card parse` does not pay for loading OpenCV or face models."""

from __future__ import annotations

import importlib

import click

# name -> (module, attribute, help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("hall.cmd_demo", "demo", "Run the whole system locally: broker, central and a simulated kiosk."),
    "agent": ("hall.cmd_agent", "agent", "The kiosk service (edge agent)."),
    "central": ("hall.cmd_central", "central", "Central: collector, registry, dashboard, enrolment."),
    "provision": ("hall.cmd_provision", "provision", "Kiosk provisioning: enrol with central, self-test."),
    "sim": ("hall.cmd_sim", "sim", "Drive the simulated hardware of a running demo kiosk."),
    "card": ("hall.cmd_card", "card", "Card and CCCD QR tools."),
    "face": ("hall.cmd_face", "face", "Face verification tools."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, SUBCOMMANDS[n][2]) for n in self.list_commands(ctx)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="hall-kiosk")
def main() -> None:
    """Hall kiosk appliance: check-in kiosk, uplink and central collector."""
