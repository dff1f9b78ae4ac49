"""Report: figures (matplotlib), tables (CSV, Markdown), one self-contained HTML page."""

from .build import ReportContext, write_report

__all__ = ["ReportContext", "write_report"]
