"""Failed credentials per client address and per username, in memory (a restart forgets them).

Logins are judged on three counts in a sliding window:
- failures from one address, whatever the usernames: spraying passwords across accounts stops there;
- failures for one username from one address: guessing one account from one place stops sooner;
- failures for one username from anywhere: past that, only addresses with no recent failure may still
  try it, so many addresses cannot keep guessing while the owner, at a desk that has not been failing,
  still logs in with the right password. Nobody can lock an account against its owner.

Bearer tokens and one-time login links are counted per address alone: past the limit that address
gets 429 before any token is looked at. An IPv6 client is counted by its /64, which one host holds whole.

Every table is bounded: past MAX_KEYS the entries least recently failed are forgotten.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

WINDOW_S = 15 * 60.0
SOURCE_FAILURES = 10  # failed logins from one address, any usernames
PAIR_FAILURES = 5  # failed logins for one username from one address
USER_FAILURES = 20  # failed logins for one username from all addresses
TOKEN_FAILURES = 20  # unknown bearer tokens or login links from one address
MAX_KEYS = 10_000


def source_of(host: str | None) -> str:
    """The address a client is counted under: itself, or its /64 for IPv6."""
    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Failures:
    """Failure times per key within the window; bounded in keys."""

    def __init__(self, window_s: float, clock: Callable[[], float]):
        self.window_s, self._clock = window_s, clock
        self._times: OrderedDict[Hashable, list[float]] = OrderedDict()

    def count(self, key: Hashable) -> int:
        times = self._times.get(key)
        if not times:
            return 0
        cutoff = self._clock() - self.window_s
        kept = [t for t in times if t > cutoff]
        if kept:
            self._times[key] = kept
        else:
            del self._times[key]
        return len(kept)

    def add(self, key: Hashable) -> None:
        self.count(key)
        self._times.setdefault(key, []).append(self._clock())
        self._times.move_to_end(key)
        while len(self._times) > MAX_KEYS:
            self._times.popitem(last=False)

    def clear(self, key: Hashable) -> None:
        self._times.pop(key, None)


class Guard:
    """What the login route and the bearer-token check ask before they spend any effort on a credential."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()  # called from the event loop and from the thread that runs argon2
        self._source = Failures(window_s, clock)
        self._pair = Failures(window_s, clock)
        self._user = Failures(window_s, clock)
        self._tokens = Failures(window_s, clock)
        self._noted: Failures = Failures(window_s, clock)  # refusals already written to the audit log

    def login_refusal(self, source: str, username: str) -> str | None:
        """Why a login from ``source`` as ``username`` is refused without checking the password, or None."""
        with self._lock:
            from_source = self._source.count(source)
            if from_source >= SOURCE_FAILURES:
                return f"{from_source} failed logins from {source}"
            if self._pair.count((source, username)) >= PAIR_FAILURES:
                return f"too many failed logins as {username!r} from {source}"
            if from_source and self._user.count(username) >= USER_FAILURES:
                return f"{username!r} is being guessed from many addresses; {source} has failed recently"
            return None

    def login_failed(self, source: str, username: str) -> None:
        with self._lock:
            self._source.add(source)
            self._pair.add((source, username))
            self._user.add(username)

    def login_succeeded(self, source: str, username: str) -> None:
        # The address keeps its failures: logging into one's own account must not reset a spray's count.
        with self._lock:
            self._pair.clear((source, username))

    def tokens_refused(self, source: str) -> bool:
        with self._lock:
            return self._tokens.count(source) >= TOKEN_FAILURES

    def token_failed(self, source: str) -> None:
        with self._lock:
            self._tokens.add(source)

    def first_refusal(self, key: Hashable) -> bool:
        """True once per window and key: a flood of refusals leaves one audit entry, not one each."""
        with self._lock:
            if self._noted.count(key):
                return False
            self._noted.add(key)
            return True
