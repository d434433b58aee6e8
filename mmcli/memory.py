"""The memory limit: an array too large is refused, with its size, before it is allocated.

By default one array may take the larger of 1 GiB and half the memory the machine has available when the
first large array is asked for; ``--max-memory`` (or :func:`set_limit`) sets the limit. The model matrix, the
smooths' bases, the Gram and Schur-complement matrices of the core and the dense n x n formulation are checked.
"""

from __future__ import annotations

import math
import re

from mmcli.errors import ModelError, UsageError

GIB = 1024**3
_limit: int | None = None


def set_limit(nbytes: int | None) -> None:
    """The largest array mmcli allocates; None for the default."""
    global _limit
    _limit = nbytes


def limit() -> int:
    if _limit is not None:
        return _limit
    return max(GIB, _meminfo("MemAvailable:") // 2)


def _meminfo(key: str) -> int:
    """A figure of /proc/meminfo in bytes (0 where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def trim_heap() -> None:
    """Hand the free pages of the heap back to the operating system (glibc's malloc_trim; nothing to do elsewhere
    than glibc), before a large array is made: what a computation freed then does not add to the peak."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def human(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} EB"  # pragma: no cover


def check_allocation(nbytes: float, what: str) -> None:
    """Refuse an array of ``nbytes`` (an estimate) above the limit, naming what it is for."""
    if nbytes <= (GIB if _limit is None else _limit) or nbytes <= limit():  # /proc read only for large ones
        return
    what = f"{what[:1].upper()}{what[1:]} would need {human(nbytes)}"
    total = _meminfo("MemTotal:")
    if total and nbytes > total:
        raise ModelError(f"{what}, more than this machine's memory ({human(total)}): simplify the model.")
    need = math.ceil(nbytes / GIB * 1.25)
    raise ModelError(
        f"{what}, more than the memory limit of {human(limit())}: simplify the model, or raise the limit with "
        f"--max-memory {need}G if the machine has the memory."
    )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'8G', '512M', '2GiB', '1.5T' or a number of bytes (units are powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"--max-memory takes a size such as 4G, 512M or 2GiB, not '{text}'.")
    scale = 1024 ** "bkmgt".index((m.group(2) or "b").lower())
    return int(float(m.group(1)) * scale)
