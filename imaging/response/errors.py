"""The one error type of the response engine."""

from __future__ import annotations

import datetime as _dt


class CourseError(ValueError):
    """A course file, or a request about it, that the engine cannot assess.

    Messages name the time point (counted from 1, with its date) and the field,
    e.g. ``"timepoint 3 (2024-04-01): target[T1].long_axis_mm: must be >= 0, got -3"``.

    Parameters
    ----------
    message
        What is wrong, in words.
    timepoint_index
        1-based index of the time point concerned, if any.
    timepoint_date
        Its date, if known.
    field
        Dotted path of the field concerned, e.g. ``"target[T1].long_axis_mm"``.
    source
        The file (or other origin) of the course, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        timepoint_index: int | None = None,
        timepoint_date: _dt.date | str | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        self.reason = message
        self.timepoint_index = timepoint_index
        self.timepoint_date = timepoint_date
        self.field = field
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        parts: list[str] = []
        if self.source:
            parts.append(str(self.source))
        if self.timepoint_index is not None:
            where = f"timepoint {self.timepoint_index}"
            if self.timepoint_date is not None:
                where += f" ({self.timepoint_date})"
            parts.append(where)
        if self.field:
            parts.append(self.field)
        parts.append(self.reason)
        return ": ".join(parts)

    def with_source(self, source: str | None) -> CourseError:
        """Return a copy of this error that also names ``source``."""
        if not source or self.source:
            return self
        return CourseError(
            self.reason,
            timepoint_index=self.timepoint_index,
            timepoint_date=self.timepoint_date,
            field=self.field,
            source=source,
        )
