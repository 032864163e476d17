"""bench/fleet.py's smoke run: 50 kiosks through a real Mosquitto into a real `hall central run` and every
figure it reports is backed by what central shows (the bench itself is run by hand, with 10,000)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_fifty_kiosks_reach_central_and_a_dropped_one_opens_its_alert(broker):  # the fixture: Mosquitto installed and on PATH
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fleet.py"), "--devices", "50", "--workers", "1", "--duration", "30",
         "--interval", "5", "--burst-at", "3", "--offline", "1"],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kiosks_connected"] == 50 and result["connect_failed"] == 0 and result["connections_lost"] == 0
    assert result["online_in_api"] == 49  # all but the one dropped, as central's fleet list counts them
    assert result["offline_alerts"] == 1 and result["offline_to_alert_s"][0] >= result["alert_grace_s"]
    assert result["records_sent"] > 0 and result["records_stored"] == result["records_sent"] and result["rejections"] == 0
    assert result["ingest_lag_samples"] > 0 and result["ingest_probe_timeouts"] == 0 and result["api_errors"] == 0
