"""Reports of a run: terminal tables and the static HTML report (``write_report``)."""

from imaging.report.console import timeline_table
from imaging.report.html import write_report

__all__ = ["timeline_table", "write_report"]
