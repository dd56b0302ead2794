"""The console the commands print their tables with.

Tables are designed for a 100-column terminal. On a terminal rich uses its width. When the
output is redirected (a pipe, a log file, CI) rich would assume 80 columns; redirected output
gets ``COLUMNS`` columns if that variable is set, else :data:`REDIRECTED_WIDTH`.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

REDIRECTED_WIDTH = 100


def width() -> int | None:
    """Columns to print to: None (the terminal's) on a terminal, else ``COLUMNS`` or 100."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else REDIRECTED_WIDTH


def console() -> Console:
    return Console(width=width())
