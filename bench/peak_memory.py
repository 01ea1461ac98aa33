"""This process's resident memory from /proc/self/status, and a reset of its peak: how the
engine and scale benchmarks measure the extra memory of one call (Linux only)."""
from __future__ import annotations


def status_kib(field: str) -> int:
    """A /proc/self/status field in KiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
