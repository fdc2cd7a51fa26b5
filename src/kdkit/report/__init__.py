"""Tables (and, later, pictures) of a run."""

from kdkit.report.table import COLUMNS, print_table, to_markdown

__all__ = ["COLUMNS", "print_table", "to_markdown"]
