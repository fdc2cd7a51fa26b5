"""Tables and pictures of a run: the comparison table, `kdkit report` (one run) and `kdkit compare` (several)."""

from kdkit.report.build import ReportFiles, build_document, write_report
from kdkit.report.compare import CompareFiles, write_compare
from kdkit.report.rundir import RunData, load_run
from kdkit.report.table import COLUMNS, print_table, to_markdown

__all__ = [
    "COLUMNS", "CompareFiles", "ReportFiles", "RunData", "build_document", "load_run", "print_table", "to_markdown",
    "write_compare", "write_report",
]
