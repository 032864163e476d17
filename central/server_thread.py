"""A uvicorn server on a daemon thread: started (or failed with a reason) before ``start`` returns.

Central serves its app from threads (the staff API, the HTTPS enrolment listener) next to the
collector, in one process; both listeners start and stop the same way.
"""

from __future__ import annotations

import threading
import time

import uvicorn

from .errors import CentralError


class ServerThread:
    def __init__(self, config: uvicorn.Config, *, name: str):
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name=name, daemon=True)
        self._where = f"{config.host}:{config.port}"

    def start(self, what: str, timeout: float = 15.0) -> None:
        """Return once the server listens; raise CentralError (and stop) if it exits or takes over ``timeout`` s."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise CentralError(f"{what} did not start on {self._where} (port in use?)")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
