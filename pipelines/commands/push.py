"""`tumor-response push SERVER PATH...`: send DICOM files (SEG, SR) to a PACS by STOW-RS or C-STORE.

Folders are searched for ``*.dcm``. Exit code 1 when a send fails (the message
names the server and the file), 2 on bad arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def push_command(
    server: Annotated[str, typer.Argument(help="http://host:port/dicom-web (DICOMweb) or dimse://CALLED_AET@host:port")],
    paths: Annotated[list[Path], typer.Argument(help="DICOM files or folders (e.g. an export's output folder)")],
    aet: Annotated[str, typer.Option("--aet", help="our (calling) AE title, for DIMSE")] = "TUMORRESP",
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="seconds before a silent server is given up")] = 30.0,
) -> None:
    """Send DICOM SEG/SR (or any DICOM files) to a PACS."""
    from pipelines.dicom.pacs import PacsError, parse_server, push

    try:
        srv = parse_server(server)
    except PacsError as exc:
        raise typer.BadParameter(str(exc), param_hint="SERVER") from None
    try:
        result = push(srv, paths, calling_aet=aet, timeout_s=timeout)
    except PacsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{result.sent} file(s) sent to {srv} ({result.bytes / 2**20:.1f} MB)")


def register(app: typer.Typer) -> None:
    """Add the ``push`` command to the console script."""
    app.command("push")(push_command)
