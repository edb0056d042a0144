"""The typer app: parses options, calls the modules, maps exceptions to messages and exit codes.

Heavy or optional modules (questionary, the protocol data, the log) are imported inside the
commands that need them, so `icans --help` stays fast (a test guards this).
"""

from __future__ import annotations

import typer

from icans_cli import __version__
from icans_cli.exit import ExitStatus

app = typer.Typer(
    name="icans",
    help="ICANS after CAR-T: ICE/CAPD scoring, ASTCT 2019 grading, and sourced corticosteroid "
         "decision support. Decision support only: the treating team decides.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"icans {__version__}")
        raise typer.Exit(ExitStatus.OK)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """ICANS grading and management support for CAR-T teams."""


def main() -> None:
    app()
