"""systemd notification (READY, WATCHDOG, STATUS) without a dependency.

The unit runs with Type=notify and WatchdogSec=: the agent pings only while its
event loop turns, so a hung loop gets the service restarted by systemd (and a
hung systemd by the hardware watchdog, RuntimeWatchdogSec in firmware/).
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` to $NOTIFY_SOCKET; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            return False
    return True
