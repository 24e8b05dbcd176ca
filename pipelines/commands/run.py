"""`tumor-response run CONFIG.yaml [--set key=value ...]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def run(
    config: Annotated[Path, typer.Argument(help="YAML run configuration (paths in it are relative to it)")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a field by its dotted path, e.g. --set output_dir=/tmp/x"),
    ] = None,
) -> None:
    """Run the pipeline on a dataset: measure every lesion at every time point and assess the response."""
    from rich.console import Console

    from pipelines.batch.run import RunError, print_summary, run_pipeline  # imaging libraries load only when needed
    from pipelines.config import ConfigError, load_config  # pydantic models and YAML: only when the command runs

    # Plain (non-TTY) output keeps full-width rows so logs and CI show the whole table.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        cfg = load_config(config, set_ or [])
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        summary = run_pipeline(cfg, Console(stderr=True))
    except RunError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    print_summary(summary, cfg, console)
    if summary.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
