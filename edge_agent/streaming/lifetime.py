"""Child processes that must not outlive the kiosk agent.

ffmpeg runs in its own session (so a Ctrl-C in a terminal does not reach it
behind the supervisor's back), which also means nothing kills it when the agent
is SIGKILLed or crashes: it would go on encoding, filling the disk past the
quota nobody enforces any more, and holding the stream name at the media server
so the restarted kiosk's push is refused ("already publishing"). Linux's
parent-death signal closes that gap: the kernel signals the child when its
parent goes, however it goes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when its parent dies.

    The kernel's "parent" is the *thread* that started the child: start it from a thread that
    lives as long as the child should (the streamer's supervisor thread does). The signal
    survives ``exec`` (not of a set-uid binary). If the parent died between fork and prctl,
    the child signals itself at once instead of running orphaned.
    """
    parent = os.getpid()

    def _preexec() -> None:  # runs in the forked child, before exec: no allocation-heavy work here
        _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return _preexec
