"""Reports of a run: terminal tables (the HTML report arrives with issue 7)."""

from imaging.report.console import timeline_table

__all__ = ["timeline_table"]
