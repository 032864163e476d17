"""`hall central member transfer|standing|leave|joined|history`: members' history in cells (central/membership.py).

Who a cell expected at a meeting is who belonged to it on the meeting's date, so these changes carry the
date they took effect (ISO, YYYY-MM-DD), not the day they are typed. Each is recorded in the audit log.
"""

from __future__ import annotations

import click

from .cmd_central import _audit, _errors, _store, member

ON_HELP = "The date it took effect, YYYY-MM-DD (not before the member's last recorded change)."
NOTE_HELP = "A short note kept with the change (a decision's number, for example)."


def _actor() -> str:
    from central import audit

    return audit.cli_actor()


@member.command("transfer")
@click.argument("member_id")
@click.option("--to", "to_cell", required=True, help="The cell the member moves to.")
@click.option("--on", "on", required=True, help=ON_HELP)
@click.option("--note", default=None, help=NOTE_HELP)
@_errors
def member_transfer(member_id: str, to_cell: str, on: str, note: str | None) -> None:
    """Transfer MEMBER_ID to another cell from a date: expected at the old cell's meetings before it, the new one's from it."""
    from central import membership

    with _store() as store, store.transaction():
        from_cell = membership.transfer(store, member_id, to_cell, on, by=_actor(), note=note)
        _audit(store, "member.transfer", {"member": member_id, "from": from_cell, "to": to_cell, "on": on, "note": note})
    click.echo(f"{member_id} transferred from {from_cell} to {to_cell} on {on}")


@member.command("standing")
@click.argument("member_id")
@click.argument("standing", type=click.Choice(["probationary", "official"]))
@click.option("--on", "on", required=True, help=ON_HELP)
@click.option("--note", default=None, help=NOTE_HELP)
@_errors
def member_standing(member_id: str, standing: str, on: str, note: str | None) -> None:
    """Record MEMBER_ID as a probationary or official Party member from a date."""
    from central import membership

    with _store() as store, store.transaction():
        membership.set_standing(store, member_id, standing, on, by=_actor(), note=note)
        _audit(store, "member.standing", {"member": member_id, "standing": standing, "on": on, "note": note})
    click.echo(f"{member_id} is {standing} from {on}")


@member.command("leave")
@click.argument("member_id")
@click.option("--on", "on", required=True, help=ON_HELP)
@click.option("--reason", required=True, type=click.Choice(["left", "deceased"]),
              help="left: the member left the Party; deceased: the member died.")
@click.option("--note", default=None, help=NOTE_HELP)
@_errors
def member_leave(member_id: str, on: str, reason: str, note: str | None) -> None:
    """Record that MEMBER_ID left the Party or died on a date: no cell expects them after it; their past stays."""
    from central import membership

    with _store() as store, store.transaction():
        cell = membership.leave(store, member_id, reason, on, by=_actor(), note=note)
        _audit(store, "member.leave", {"member": member_id, "cell": cell, "reason": reason, "on": on, "note": note})
    click.echo(f"{member_id} ({cell}): {reason} on {on}")


@member.command("joined")
@click.argument("member_id")
@click.option("--on", "on", required=True, help="The date the member joined their cell, YYYY-MM-DD.")
@_errors
def member_joined(member_id: str, on: str) -> None:
    """Set the date MEMBER_ID joined their cell (enrolment records its own day) while nothing later is recorded."""
    from central import membership

    with _store() as store, store.transaction():
        membership.set_joined(store, member_id, on, by=_actor())
        _audit(store, "member.joined", {"member": member_id, "on": on})
    click.echo(f"{member_id} joined on {on}")


@member.command("history")
@click.argument("member_id")
@_errors
def member_history(member_id: str) -> None:
    """Show MEMBER_ID's history in cells, oldest first: date, change, cell, recorded by, note."""
    from central import membership

    with _store() as store:
        for e in membership.history(store, member_id):
            click.echo(f"{e['at']}\t{e['kind']}\t{e['cell']}\t{e['recorded_by']}\t{e['note'] or '-'}")
