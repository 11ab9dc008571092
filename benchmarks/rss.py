"""This process's peak resident memory, in MB.

Linux keeps `ru_maxrss` across `execve`: a child started by a process that peaked at 2.8 GB reports at least 2.8 GB
before it allocates anything, so a "fresh process" measured by `ru_maxrss` measures its parent. `VmHWM` in
/proc/self/status belongs to the process's own address space and starts again at exec; use it where it exists.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """The high-water mark of this process's resident memory since it started (exec), in MB."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere
