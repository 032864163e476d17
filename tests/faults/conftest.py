from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import IN_CI

from .harness import Harness


@pytest.fixture
def fault_records() -> int:
    """Check-ins per case; a test may parametrize it."""
    return int(os.environ.get("HALL_FAULT_RECORDS", "1000"))


@pytest.fixture
def central_seed() -> bytes | None:
    """Central's signing key seed; None lets central make its own. A test may parametrize it."""
    return None


@pytest.fixture
def harness(tmp_path, fault_records, central_seed):
    if not shutil.which("mosquitto"):
        os.environ["PATH"] += os.pathsep + "/usr/sbin"
    if not shutil.which("mosquitto"):
        (pytest.fail if IN_CI else pytest.skip)("mosquitto is not installed")
    h = Harness(tmp_path, members=fault_records, central_seed=central_seed)
    yield h
    h.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Whatever failed (an assertion, a timeout, a crashed process), show the tails of the logs of the
    kiosk driver, central and the broker: a flaky case must be diagnosable from the CI output alone."""
    report = yield
    harness = getattr(item, "funcargs", {}).get("harness")
    if report.failed and isinstance(harness, Harness):
        for title, text in harness.log_tails():
            if hasattr(report.longrepr, "addsection"):
                report.longrepr.addsection(title, text)
            else:
                report.sections.append((title, text))
    return report
