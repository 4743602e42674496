"""Child processes that cannot outlive the benchmark."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def kill_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the benchmark process dies, however it dies (Linux)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
