"""Whether a process id names a live process."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True for a running process; false for none, and for a zombie (exited, not yet
    reaped by its parent), which ``kill(pid, 0)`` alone would report as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is
    return state != "Z"
