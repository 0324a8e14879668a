"""Entry point of the ``gigafactory`` command.

Each concern registers its own Typer sub-app or commands here, in one explicit list.
User errors print one clear line (no traceback) and exit with status 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

app = typer.Typer(
    name="gigafactory",
    help="Run a shared AI gigafactory: scheduling core, digital twin and control plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2."""


def _register() -> None:
    from gigafactory.cli import demo_cmd, service_cmds, trace_cmd, twin_cmd

    demo_cmd.register(app)
    trace_cmd.register(app)
    twin_cmd.register(app)
    service_cmds.register(app)


_register()


def main() -> None:
    try:
        app()
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
