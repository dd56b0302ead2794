"""The console the commands print their tables with.

Tables are designed for a 100-column terminal (``compare``'s, with its goodput and tail-SLO
columns, for about 125). On a terminal rich uses its width; when the
output is redirected (a pipe, a log file, CI) rich would assume 80 columns and fold or drop
columns, so redirected output gets :data:`REDIRECTED_WIDTH` columns instead: tables keep their
natural width (100 to 125) and one-line messages stay on one line.
"""

from __future__ import annotations

import sys

from rich.console import Console

REDIRECTED_WIDTH = 200


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else REDIRECTED_WIDTH)
