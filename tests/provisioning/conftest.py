"""Fixtures the provisioning tests share."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from hardware.camera import show_face
from hardware.pn532_sim import SimulatedPn532
from hardware.serial_ports import open_pty_pair


@pytest.fixture
def twins(tmp_path):
    """A PN532 twin on a pty, a camera stage holding a picture, a synced-clock flag: what a good kiosk has."""
    master, reader_path = open_pty_pair()
    chip = SimulatedPn532(fd=master)
    chip.start()
    picture = tmp_path / "face.png"
    img = np.full((240, 320, 3), 200, np.uint8)
    cv2.circle(img, (160, 120), 60, (40, 80, 160), -1)
    cv2.imwrite(str(picture), img)
    stage = tmp_path / "stage.jpg"
    show_face(stage, picture)
    flag = tmp_path / "synchronized"
    flag.touch()
    yield {"reader": reader_path, "stage": stage, "sync_flag": flag}
    chip.stop()
    os.close(master)
