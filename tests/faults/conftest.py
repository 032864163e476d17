from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import IN_CI

from .harness import Harness


@pytest.fixture
def harness(tmp_path):
    if not shutil.which("mosquitto"):
        os.environ["PATH"] += os.pathsep + "/usr/sbin"
    if not shutil.which("mosquitto"):
        (pytest.fail if IN_CI else pytest.skip)("mosquitto is not installed")
    h = Harness(tmp_path, members=int(os.environ.get("HALL_FAULT_RECORDS", "1000")))
    yield h
    h.stop_all()
