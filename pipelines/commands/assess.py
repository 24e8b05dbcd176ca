"""`tumor-response assess`: placeholder until the response engine lands (filled in by issue 6)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
