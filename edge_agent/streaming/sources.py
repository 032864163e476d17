"""What the streamer captures, how it encodes, and the ffmpeg command that ties them.

The capture device is injected like every other device: a :class:`Source` holds
the ffmpeg input arguments and the stream maps, so the Pi's V4L2 camera + ALSA
microphone, a looped video file (the demo) and ffmpeg's test sources all go
through the same command builder.

Encoding is chosen for a hall's weak uplink: 640x360 at 15 fps, H.264 at
500 kb/s (capped, 2 s VBV buffer) + AAC mono 64 kb/s, a keyframe every 2 s so a
viewer or a reconnecting push starts within one GOP. About 0.6 Mb/s in all,
which a 3G/4G hotspot or a shared DSL line carries with headroom.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HW_ENCODER = "h264_v4l2m2m"
SW_ENCODER = "libx264"


@dataclass(frozen=True)
class Source:
    """ffmpeg input arguments (everything before the output) and the streams to take from them."""

    args: tuple[str, ...]
    maps: tuple[str, ...] = ("0:v:0", "0:a:0")
    label: str = "custom"


def file_loop(path: str | Path) -> Source:
    """A video file played forever at its own pace (the demo's camera + microphone)."""
    return Source(("-stream_loop", "-1", "-re", "-i", str(path)), ("0:v:0", "0:a:0?"), f"file:{Path(path).name}")


def v4l2_alsa(
    video: str = "/dev/video0", audio: str = "default", *, size: str = "640x360", fps: int = 15, input_format: str | None = None
) -> Source:
    """The Pi's USB/CSI camera through V4L2 and its microphone through ALSA (e.g. ``audio='hw:1,0'``)."""
    v = ["-f", "v4l2", "-thread_queue_size", "512", "-framerate", str(fps), "-video_size", size]
    if input_format:
        v += ["-input_format", input_format]
    a = ["-f", "alsa", "-thread_queue_size", "1024", "-ac", "1", "-i", audio]
    return Source((*v, "-i", video, *a), ("0:v:0", "1:a:0"), f"v4l2:{video}+alsa:{audio}")


def lavfi_pattern(*, size: str = "640x360", fps: int = 15, tone_hz: int = 440) -> Source:
    """ffmpeg's colour bars and a sine tone, in real time."""
    return Source(
        ("-re", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}",
         "-re", "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=44100"),
        ("0:v:0", "1:a:0"),
        "testsrc+sine",
    )


@dataclass(frozen=True)
class Profile:
    """Output size and rates; the defaults suit a weak uplink (~0.6 Mb/s)."""

    width: int = 640
    height: int = 360
    fps: int = 15
    video_kbps: int = 500
    audio_kbps: int = 64
    gop_s: float = 2.0

    def describe(self) -> str:
        return f"{self.width}x{self.height}@{self.fps} H.264 {self.video_kbps}k + AAC {self.audio_kbps}k"


@lru_cache(maxsize=8)
def choose_encoder(ffmpeg: str = "ffmpeg") -> str:
    """``h264_v4l2m2m`` when it is listed *and* encodes a frame here, else ``libx264``.

    Listing alone is not enough: Debian's x86 ffmpeg lists the V4L2 wrapper too,
    and it fails only when opened because no /dev/video1x encoder exists.
    """
    try:
        listed = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return SW_ENCODER
    if HW_ENCODER not in listed:
        return SW_ENCODER
    trial = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15:duration=0.5",
             "-pix_fmt", "yuv420p", "-c:v", HW_ENCODER, "-b:v", "300k", "-f", "null", "-"]
    try:
        ok = subprocess.run(trial, capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return HW_ENCODER if ok else SW_ENCODER


def video_codec_args(encoder: str, p: Profile) -> list[str]:
    gop = str(max(1, round(p.fps * p.gop_s)))
    rate = ["-b:v", f"{p.video_kbps}k", "-maxrate", f"{p.video_kbps}k", "-bufsize", f"{p.video_kbps * 2}k"]
    if encoder == SW_ENCODER:
        # zerolatency: no B-frames or lookahead, so a frame leaves as soon as it is coded.
        return ["-c:v", SW_ENCODER, "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "main", *rate, "-g", gop, "-keyint_min", gop]
    return ["-c:v", encoder, *rate, "-g", gop]


def push_format(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("rtmp", "rtmps"):
        return "flv"
    if scheme in ("srt", "udp", "rist"):
        return "mpegts"
    raise ValueError(f"unsupported ingest URL {redact_url(url)!r}: use rtmp://, rtmps:// or srt://")


def redact_url(url: str) -> str:
    """The ingest URL without its stream key (the status is published and shown to staff)."""
    parts = urlsplit(url)
    path = parts.path
    if "/" in path.strip("/"):
        head, _, name = path.rpartition("/")
        device, dot, _ = name.partition(".")
        path = f"{head}/{device}{'.***' if dot else ''}"
    query = "***" if parts.query else ""
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _tee_escape(text: str) -> str:
    # The tee muxer splits on | and reads [options]; backslash-escape its special characters.
    for ch in "\\|[]":
        text = text.replace(ch, "\\" + ch)
    return text


@dataclass
class Command:
    source: Source
    segment_pattern: Path
    ingest_url: str | None
    encoder: str = SW_ENCODER
    profile: Profile = field(default_factory=Profile)
    segment_s: float = 4.0
    recovery_wait_s: float = 2.0
    queue_packets: int = 120
    ffmpeg: str = "ffmpeg"

    def argv(self) -> list[str]:
        p = self.profile
        out = [self.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+verbose",
               "-progress", "pipe:1", "-stats_period", "1", *self.source.args]
        for m in self.source.maps:
            out += ["-map", m]
        out += ["-vf", f"scale={p.width}:{p.height}:force_original_aspect_ratio=decrease,pad={p.width}:{p.height}:-1:-1,fps={p.fps},format=yuv420p"]
        out += video_codec_args(self.encoder, p)
        out += ["-c:a", "aac", "-b:a", f"{p.audio_kbps}k", "-ac", "1", "-ar", "44100"]
        # The tee muxer does not pass FLV's need for global headers on to the encoder;
        # without them nginx-rtmp gets no SPS/PPS and cannot cut HLS.
        out += ["-flags", "+global_header"]
        # mpegts segments: a file cut short by a power loss stays playable up to its last packet.
        # Timestamps are not reset, so consecutive segments can be checked for gaps.
        rec = f"[f=segment:segment_time={self.segment_s}:segment_format=mpegts]" + _tee_escape(str(self.segment_pattern))
        slaves = [rec]
        if self.ingest_url:
            fmt = push_format(self.ingest_url)
            # fifo: the network output runs in its own thread with a bounded queue (~2 s),
            # drops rather than blocks when the queue is full, and reopens the URL every
            # recovery_wait_s for as long as it takes; onfail=ignore keeps the recording if it gives up.
            push = (f"[f=fifo:fifo_format={fmt}:queue_size={self.queue_packets}:drop_pkts_on_overflow=1:"
                    f"attempt_recovery=1:max_recovery_attempts=0:recovery_wait_time={self.recovery_wait_s}:"
                    f"recover_any_error=1:restart_with_keyframe=1:onfail=ignore]")
            slaves.append(push + _tee_escape(self.ingest_url))
        out += ["-f", "tee", "|".join(slaves)]
        return out
