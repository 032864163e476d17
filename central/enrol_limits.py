"""How often one client address may call ``POST /enrol``: a token bucket per source, in memory.

The route is public, so without this anyone could make central write a refusal
for every request they send. A technician enrols a kiosk in one or two
requests; a source that sends more than ``burst`` at once, or more than
``per_minute`` over time, is answered 429 without its body being read or
kept. Buckets live only in this process (a restart forgives everybody, which is
harmless for a flood guard) and at most ``max_sources`` are remembered, the
least recently seen forgotten first, so a spray of addresses cannot grow memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_SOURCES = 4096
DEFAULT_PER_MINUTE = 6.0  # HALL_CENTRAL_ENROL_RATE_PER_MINUTE
DEFAULT_BURST = 10  # HALL_CENTRAL_ENROL_BURST


@dataclass(frozen=True)
class Decision:
    allowed: bool
    first_refusal: bool  # this source was allowed until now: worth one note in rejections
    retry_after_s: float


@dataclass
class _Bucket:
    tokens: float
    at: float
    limited: bool = False


class SourceLimiter:
    def __init__(self, *, per_minute: float, burst: int, max_sources: int = MAX_SOURCES,
                 clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0 or burst < 1:
            raise ValueError("an enrolment rate limit needs per_minute > 0 and burst >= 1")
        self.per_minute, self.burst, self.max_sources = per_minute, burst, max_sources
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, source: str) -> Decision:
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(source, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
            self._buckets[source] = bucket
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                bucket.limited = False
                return Decision(True, False, 0.0)
            first = not bucket.limited
            bucket.limited = True
            return Decision(False, first, (1.0 - bucket.tokens) / self._rate)
