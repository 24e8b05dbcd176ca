"""The ``tumor-response`` console script.

One typer application; each subcommand lives in its own module under
``pipelines/commands`` and registers itself with :func:`register`, so later
stages add a module and one line here.
"""

from __future__ import annotations

import typer

from pipelines.commands import assess, export, index, measure, pull, push, register, run

app = typer.Typer(
    name="tumor-response",
    help="Longitudinal tumour imaging: load scans, measure lesions, call the response.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in (run, assess, index, export, pull, push, measure, register):
    _module.register(app)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
