"""The kiosk's log ring, which a "logs" command from central reads (edge_agent/commands.py)."""

from __future__ import annotations

import logging

from contract.commands import MAX_LINE
from edge_agent.commands import RING_LINES, LogRing


def test_the_ring_keeps_the_newest_lines_each_cut_to_the_contracts_limit():
    ring = LogRing().install()
    logger = logging.getLogger("edge_agent.test_ring")
    logger.setLevel(logging.INFO)
    try:
        for i in range(RING_LINES + 50):
            logger.info("line %05d %s", i, "x" * 400)
    finally:
        ring.remove()
    logger.info("after removal")
    assert len(ring.lines) == RING_LINES
    last = ring.last(3)
    assert [line.split("line ")[1][:5] for line in last] == [f"{RING_LINES + 47:05d}", f"{RING_LINES + 48:05d}", f"{RING_LINES + 49:05d}"]
    assert all(len(line) == MAX_LINE for line in last) and "edge_agent.test_ring" in last[0]
    assert not any("after removal" in line for line in ring.lines)
