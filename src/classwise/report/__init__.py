"""Report: figures (matplotlib), tables (CSV, Markdown), one self-contained HTML page."""

from .build import write_report

__all__ = ["write_report"]
