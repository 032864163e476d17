"""Streaming the hall into the hybrid meeting: capture sources, local recording, the supervised ffmpeg."""

from .recording import Recording
from .sources import HW_ENCODER, SW_ENCODER, Command, Profile, Source, choose_encoder, file_loop, lavfi_pattern, redact_url, v4l2_alsa
from .streamer import Streamer, StreamerError

__all__ = [
    "HW_ENCODER", "SW_ENCODER", "Command", "Profile", "Recording", "Source", "Streamer", "StreamerError",
    "choose_encoder", "file_loop", "redact_url", "lavfi_pattern", "v4l2_alsa",
]
