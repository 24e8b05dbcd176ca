"""`tumor-response pull SERVER --into ARCHIVE [--patient ID] [--study UID] [--since DATE] [--until DATE]`.

Fetches studies from a PACS into an archive folder that ``index`` and ``run``
read (see docs/pacs.md). SERVER is a DICOMweb base URL
(``http://127.0.0.1:8042/dicom-web``) or ``dimse://CALLED_AET@host:port``.
Resumable: rerun the same command after an interruption. Exit code 1 when the
pull fails (the message names the server and the request), 2 on bad arguments.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}", param_hint=option) from None


def pull_command(
    server: Annotated[str, typer.Argument(help="http://host:port/dicom-web (DICOMweb) or dimse://CALLED_AET@host:port")],
    into: Annotated[Path, typer.Option("--into", help="archive folder (created if missing)")],
    patient: Annotated[str | None, typer.Option("--patient", help="PatientID")] = None,
    study: Annotated[str | None, typer.Option("--study", help="StudyInstanceUID")] = None,
    since: Annotated[str | None, typer.Option("--since", help="first StudyDate, YYYY-MM-DD (inclusive)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="last StudyDate, YYYY-MM-DD (inclusive)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=32, help="concurrent transfers")] = 4,
    aet: Annotated[str, typer.Option("--aet", help="our (calling) AE title, for DIMSE")] = "TUMORRESP",
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="seconds before a silent server is given up")] = 30.0,
) -> None:
    """Fetch studies from a PACS (DICOMweb or DIMSE) into an archive folder; resumable."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.dicom.pacs import PacsError, StudyQuery, parse_server, pull

    query = StudyQuery(patient_id=patient, study_uid=study, since=_date(since, "--since"), until=_date(until, "--until"))
    if query.since and query.until and query.since > query.until:
        raise typer.BadParameter(f"--since {query.since} is after --until {query.until}")
    try:
        srv = parse_server(server)
    except PacsError as exc:
        raise typer.BadParameter(str(exc), param_hint="SERVER") from None
    console = Console(stderr=True)
    progress = Progress(TextColumn("pull"), BarColumn(), MofNCompleteColumn(), TextColumn("instances, {task.fields[mb]:.1f} MB"),
                        TimeElapsedColumn(),
                        console=console, disable=not console.is_terminal)
    task = progress.add_task("pull", total=None, mb=0.0)

    def update(done: int, total: int, nbytes: int) -> None:
        progress.update(task, completed=done, total=total, mb=nbytes / 2**20)

    try:
        with progress:
            result = pull(srv, into, query, workers=workers, calling_aet=aet, timeout_s=timeout, progress=update)
    except PacsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    rate = f", {result.mb_per_s:.1f} MB/s, {result.instances_per_s:.0f} instances/s" if result.fetched else ""
    typer.echo(f"{len(result.studies)} study(ies), {result.found} instance(s): {result.fetched} fetched "
               f"({result.bytes / 2**20:.1f} MB in {result.seconds:.1f} s{rate}), {result.already_present} already "
               f"in {into}/")


def register(app: typer.Typer) -> None:
    """Add the ``pull`` command to the console script."""
    app.command("pull")(pull_command)
