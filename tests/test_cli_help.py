"""Every `hall` command, at every depth, has a help text of its own: a first line that says what it
does and a description of each option — shown by `--help` as a user would run it."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from hall.cli import main


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Each subcommand of ``group`` with its path, recursively (lazily loaded groups included)."""
    ctx = click.Context(group, info_name="hall")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"`hall {' '.join((*path, name))}` is listed but cannot be loaded"
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def _words(text: str) -> str:
    return "".join(text.split())  # click re-wraps, and may break a line after a hyphen


def help_problems(root: click.Group, prog: str = "hall") -> list[str]:
    """What is missing from the help of ``root``'s commands; empty when every command explains itself."""
    problems = []
    runner = CliRunner()
    for path, command in _commands(root):
        where = f"`{prog} {' '.join(path)}`"
        first_line = (command.help or "").strip().split("\n")[0].strip()
        if not first_line:
            problems.append(f"{where} has no help text (docstring)")
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip():
                problems.append(f"{where} option {'/'.join(param.opts)} is not described")
        shown = runner.invoke(root, [*path, "--help"])
        if shown.exit_code != 0:
            problems.append(f"{where} --help exits {shown.exit_code}: {shown.output[-300:]}")
        elif first_line and _words(first_line) not in _words(shown.output):
            problems.append(f"{where} --help does not show its help text {first_line!r}")
    return problems


def test_every_hall_command_at_every_depth_explains_itself():
    paths = {path for path, _ in _commands(main)}
    # the walk reaches every top-level command and into nested groups
    assert {("demo",), ("agent", "run"), ("central", "run"), ("central", "meeting", "add"), ("central", "user", "token", "add"),
            ("central", "token", "create"), ("provision", "enroll"), ("sim", "tap"), ("card", "parse"), ("face", "compare")} <= paths
    assert help_problems(main) == []


def test_the_check_fails_for_a_command_without_help():
    @click.group()
    def tool() -> None:
        """A tool."""

    @tool.group()
    def nested() -> None:
        """Nested commands."""

    @nested.command()
    @click.option("--flag", is_flag=True)
    def bare(flag: bool) -> None:
        pass

    @tool.command()
    @click.option("--name", help="Who.")
    def good(name: str) -> None:
        """Say hello."""

    assert help_problems(tool, "tool") == ["`tool nested bare` has no help text (docstring)",
                                           "`tool nested bare` option --flag is not described"]


def test_the_readme_command_table_names_every_command():
    """Each command is in README's table, by its own name or under its group's `hall GROUP …` row."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in readme.split("## The `hall` command", 1)[1].splitlines() if line.startswith("| `hall"))
    missing = []
    for path, command in _commands(main):
        if isinstance(command, click.Group):
            continue
        prefixes = [" ".join(path[:n]) for n in range(1, len(path))]
        named = f"`hall {' '.join(path)}" in table or any(f"`hall {p} …`" in table for p in prefixes)
        if not named:
            missing.append(" ".join(path))
    assert missing == []
