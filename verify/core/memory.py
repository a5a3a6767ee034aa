"""How the tool's own processes keep freed memory (never set by the library)."""
from __future__ import annotations


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of handing it back to the kernel at once.

    The exhaustive sweep allocates and frees arrays of ~200 KB millions of times; by
    default glibc trims its heap (or unmaps them) after most frees, and the page faults
    of the next allocation cost more system time than the arithmetic (9 s of 52 s for k3
    in float16).  It cannot be undone, so only the CLI calls it, for its own process and
    the workers it forks.  False where there is no glibc (nothing changed)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_trim_threshold, 512 << 20)
    mallopt(m_mmap_threshold, 32 << 20)
    return True
