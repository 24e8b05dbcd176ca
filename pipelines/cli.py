"""The ``tumor-response`` console script.

One typer application; each subcommand lives in its own module under
``pipelines/commands`` and registers itself with its ``register(app)``. The
top-level group is lazy: it knows every command's name and one-line help from
:data:`COMMANDS` and imports ``pipelines.commands.<module>`` only when that
command runs or its own ``--help`` is asked, so ``tumor-response --help`` and
each command start without the others' imports (tests/pipelines/test_import_boundaries.py).
A new command is a module and one line in :data:`COMMANDS` (its help there is
the first line of the command function's docstring; a test keeps them equal).
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

#: name -> (module under pipelines.commands, one-line help shown by ``tumor-response --help``), in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "Run the pipeline on a dataset: measure every lesion at every time point and assess the response."),
    "assess": ("assess", "Assess a patient course by one or more response criteria."),
    "index": ("index", "Index a DICOM archive: one entry per volume, with its geometry and problems; skipped files with "
                       "the reason."),
    "convert": ("convert", "Convert a scan to NIfTI (LPS inside, RAS in the file, as NIfTI requires)."),
    "export": ("export", "Write DICOM SEG + SR (TID 1500) for every DICOM patient-time point of a run."),
    "pull": ("pull", "Fetch studies from a PACS (DICOMweb or DIMSE) into an archive folder; resumable."),
    "push": ("push", "Send DICOM SEG/SR (or any DICOM files) to a PACS."),
    "measure": ("measure", "Measure every lesion of a label map: diameters, products, volumes, centre and end points "
                           "(LPS mm)."),
    "register": ("register", "Register MOVING to FIXED; write the transform (FIXED points -> MOVING points) and its "
                             "quality figures."),
}


def load_command(name: str, *, pretty_exceptions_short: bool = True, rich_markup_mode: Any = "rich") -> TyperCommand:
    """The click command ``name``, built by typer from ``pipelines.commands.<module>.register`` (imports the module)."""
    from typer.main import get_command_from_info

    module = importlib.import_module(f"pipelines.commands.{COMMANDS[name][0]}")
    holder = typer.Typer()
    module.register(holder)
    for info in holder.registered_commands:
        if info.name == name:
            command = get_command_from_info(info, pretty_exceptions_short=pretty_exceptions_short,
                                            rich_markup_mode=rich_markup_mode)
            assert isinstance(command, TyperCommand)
            return command
    raise LookupError(f"pipelines.commands.{COMMANDS[name][0]}.register() adds no command {name!r}")


class LazyGroup(TyperGroup):
    """A typer group whose commands are imported on first use.

    ``self.commands`` holds placeholders (name and one-line help only): the
    top-level help lists them and typo suggestions read their names.
    :meth:`get_command` returns the real command, importing its module, except
    while this group formats its own help.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._loaded: dict[str, TyperCommand] = {}
        self._listing = False
        for name, (_, short) in COMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name, help=short, rich_markup_mode=self.rich_markup_mode))

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if self._listing or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = load_command(cmd_name, pretty_exceptions_short=app.pretty_exceptions_short,
                                                  rich_markup_mode=self.rich_markup_mode)
        return self._loaded[cmd_name]

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="tumor-response",
    cls=LazyGroup,
    help="Longitudinal tumour imaging: load scans, measure lesions, call the response.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """The commands are in COMMANDS (imported on use); a callback makes typer build a group with none registered."""


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
