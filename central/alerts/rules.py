"""The alert rules: what each one watches, its thresholds (defaults here, staff's changes in the database) and its check.

A check looks at one snapshot of what central already stores and returns findings: "this condition holds for
this subject (a kiosk, or a hall) now". Whether that becomes an alert (held long enough, not just booted,
not flapping) is the engine's business (engine.py). Rules never write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..clock_placement import parse_time
from . import queries

MIB = 1024 * 1024
# Summaries are read in e-mails and on pages by staff in Việt Nam: times in the halls' zone (UTC+7 all year).
HALL_TIME_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# Pi firmware get_throttled bits that describe *now* (0: under-voltage, 2: throttled). Bits 16-19 say "has
# occurred since boot" and would keep an alert open until the next reboot.
THROTTLED_NOW = 0x1 | 0x4


@dataclass(frozen=True)
class Param:
    default: float
    lo: float
    hi: float
    help: str


@dataclass(frozen=True)
class Finding:
    subject: str  # the device id, or "hall:<id>" for a hall's rule
    device: str | None
    hall: str | None
    summary: str  # Vietnamese first, English after " / "
    detail: dict[str, Any]
    delay_s: float = 0.0  # the condition must hold this long before an alert opens
    evidence: str | None = None  # a change of evidence restarts that clock (acks moved: not stalled)


@dataclass
class Context:
    now: datetime
    devices: list[queries.DeviceView]
    bundle_version: int
    store: Any  # central.store.Store, for a rule's own reads through queries.py

    def online(self) -> Iterable[queries.DeviceView]:
        return (d for d in self.devices if d.state == "online")


@dataclass(frozen=True)
class Rule:
    name: str
    title: str  # "Vietnamese / English"
    params: dict[str, Param]
    check: Callable[[Context, dict[str, float]], Iterable[Finding]]
    per_device: bool = True  # findings about a kiosk are held back while it has just booted
    defaults_enabled: bool = True


def _where(d: queries.DeviceView) -> str:
    # a kiosk's name already says its hall; the id only for one never named (staff cannot read ids)
    return d.name or f"{d.hall_name or d.hall} · {d.id}"


def _hours(meeting: dict[str, Any]) -> str:
    """'13:07 25/11–16:07 28/11' in the halls' time zone."""
    ends = parse_time(meeting["ends_at"])
    return "–".join(t.astimezone(HALL_TIME_ZONE).strftime("%H:%M %d/%m") if t else "?" for t in (meeting["starts_at_dt"], ends))


def meeting_kiosk_down(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    lead = timedelta(minutes=p["lead_min"])
    meetings = queries.meetings_between(ctx.store, ctx.now, ctx.now + lead)
    for d in ctx.devices:
        held = meetings.get(d.hall)
        if not held:
            continue
        started = [m for m in held if m["starts_at_dt"] <= ctx.now]
        meeting = (started or held)[0]
        if d.state in ("offline", "unknown"):
            problem = f"kiosk mất kết nối ({d.state}) / kiosk {d.state}"
        elif started and d.stream is not None and d.stream.get("state") != "live":
            problem = f"kiosk không phát hình ({d.stream.get('state')}) / kiosk not streaming ({d.stream.get('state')})"
        else:
            continue
        yield Finding(d.id, d.id, d.hall, f"{_where(d)}: {problem}; cuộc họp / meeting {meeting['title']} "
                      f"({_hours(meeting)})",
                      {"meeting": meeting["id"], "state": d.state, "state_reason": d.state_reason, "stream": d.stream},
                      delay_s=p["grace_s"])


def oldest_unsent(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    for d in ctx.online():
        age = d.status.get("oldest_unsent_age_s")
        if isinstance(age, int | float) and age >= p["max_age_min"] * 60:
            yield Finding(d.id, d.id, d.hall, f"{_where(d)}: bản ghi chưa gửi lâu nhất {age / 60:.0f} phút / "
                          f"oldest unsent record {age / 60:.0f} min old",
                          {"oldest_unsent_age_s": age, "queue_depth": d.status.get("queue_depth")})


def acks_stalled(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    for d in ctx.online():
        depth = d.status.get("queue_depth")
        if isinstance(depth, int) and depth > 0:
            ack = d.status.get("last_ack_seq")
            yield Finding(d.id, d.id, d.hall, f"{_where(d)}: xác nhận không tăng, {depth} bản ghi đang chờ / "
                          f"acks not advancing, {depth} records queued (last ack {ack})",
                          {"queue_depth": depth, "last_ack_seq": ack, "central_seq": d.chain_seq},
                          delay_s=p["stall_min"] * 60, evidence=str(ack))


def chain_alarm(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    alarms = queries.recent_alarms(ctx.store, ctx.now - timedelta(hours=p["window_h"]))
    gaps = queries.held_since(ctx.store)
    gap_cutoff = ctx.now - timedelta(minutes=p["gap_min"])
    for d in ctx.devices:
        alarm = alarms.get(d.id)
        held = gaps.get(d.id)
        gap = held is not None and held["oldest"] <= gap_cutoff
        if not alarm and not gap:
            continue
        parts = []
        if alarm:
            parts.append(f"{alarm['count']} cảnh báo chuỗi (fork) / chain alarm(s): {alarm['reason']}")
        if gap:
            parts.append(f"khoảng trống: {held['count']} bản ghi chờ bản ghi thiếu / gap: {held['count']} record(s) "
                         f"held waiting for a missing one")
        yield Finding(d.id, d.id, d.hall, f"{_where(d)}: " + "; ".join(parts),
                      {"alarms": alarm and alarm["count"], "held": held and held["count"]})


def clock_unsynced(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    for d in ctx.online():
        if d.status.get("clock_synced") is False:
            yield Finding(d.id, d.id, d.hall, f"{_where(d)}: đồng hồ chưa đồng bộ / clock not synced", {},
                          delay_s=p["delay_min"] * 60)


def roster_behind(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    for d in ctx.online():
        held = d.status.get("bundle_version")
        if isinstance(held, int) and held < ctx.bundle_version:
            yield Finding(d.id, d.id, d.hall, f"{_where(d)}: danh sách cũ (bản {held}, hiện tại {ctx.bundle_version}) / "
                          f"roster behind (holds {held}, current {ctx.bundle_version})",
                          {"bundle_version": held, "current": ctx.bundle_version}, delay_s=p["behind_min"] * 60)


def disk_low(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    for d in ctx.online():
        free = d.status.get("disk_free_bytes")
        if isinstance(free, int) and free < p["min_free_mb"] * MIB:
            yield Finding(d.id, d.id, d.hall, f"{_where(d)}: sắp hết dung lượng, còn {free / MIB:.0f} MB / "
                          f"disk low, {free / MIB:.0f} MB free", {"disk_free_bytes": free})


def power(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    for d in ctx.online():
        bits = d.status.get("throttled")
        if isinstance(bits, int) and bits & THROTTLED_NOW:
            words = ", ".join(d.status.get("throttled_words") or []) or hex(bits)
            yield Finding(d.id, d.id, d.hall, f"{_where(d)}: thiếu điện áp / bị giảm tốc ({words}) / "
                          f"under-voltage or throttled ({words})", {"throttled": bits, "words": d.status.get("throttled_words")},
                          delay_s=p["delay_s"])


def temperature_high(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    for d in ctx.online():
        temp = d.status.get("temperature_c")
        if isinstance(temp, int | float) and temp >= p["max_c"]:
            yield Finding(d.id, d.id, d.hall, f"{_where(d)}: nhiệt độ cao {temp:.0f} °C / temperature high {temp:.0f} °C",
                          {"temperature_c": temp}, delay_s=p["delay_s"])


def mismatch_spike(ctx: Context, p: dict[str, float]) -> Iterable[Finding]:
    hour_ago = ctx.now - timedelta(hours=1)
    since = ctx.now - timedelta(days=p["baseline_days"])
    baseline_hours = p["baseline_days"] * 24 - 1
    for hall, (recent, before, name) in queries.mismatches_by_hall(ctx.store, since, hour_ago, ctx.now).items():
        per_hour = before / baseline_hours
        if recent >= p["min_count"] and recent > p["factor"] * per_hour:
            yield Finding(f"hall:{hall}", None, hall,
                          f"{name or hall}: {recent} lần khuôn mặt không khớp trong 1 giờ (bình thường {per_hour:.1f}/giờ) / "
                          f"{recent} face mismatches in the last hour (baseline {per_hour:.1f}/h)",
                          {"last_hour": recent, "baseline_per_hour": round(per_hour, 3)})


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("meeting_kiosk_down", "Kiosk mất kết nối hoặc không phát hình khi có họp / kiosk offline or not streaming during a meeting",
         {"lead_min": Param(30, 0, 240, "a meeting starting within this many minutes counts (offline only; streaming starts with the meeting)"),
          "grace_s": Param(120, 0, 3600, "how long the kiosk must be down before the alert opens")}, meeting_kiosk_down),
    Rule("oldest_unsent", "Bản ghi chưa gửi quá lâu / records stuck in the queue",
         {"max_age_min": Param(10, 1, 1440, "oldest unsent record older than this while the kiosk is online")}, oldest_unsent),
    Rule("acks_stalled", "Xác nhận không tăng / acks not advancing",
         {"stall_min": Param(10, 1, 1440, "records queued and the kiosk's last ack unchanged this long")}, acks_stalled),
    Rule("chain_alarm", "Cảnh báo chuỗi bản ghi (fork, khoảng trống) / record chain fork or gap",
         {"window_h": Param(24, 1, 720, "a fork alarm keeps the alert open this many hours"),
          "gap_min": Param(5, 1, 1440, "records held behind a missing one this long")}, chain_alarm),
    Rule("clock_unsynced", "Đồng hồ chưa đồng bộ / clock not synced",
         {"delay_min": Param(10, 0, 1440, "the kiosk's clock unsynced this long")}, clock_unsynced),
    Rule("roster_behind", "Danh sách đại biểu cũ / roster behind",
         {"behind_min": Param(30, 1, 10080, "the kiosk holds an older bundle than the current one this long")}, roster_behind),
    Rule("disk_low", "Sắp hết dung lượng đĩa / disk low",
         {"min_free_mb": Param(500, 1, 1_000_000, "free disk below this many MiB")}, disk_low),
    Rule("power", "Thiếu điện áp hoặc bị giảm tốc / under-voltage or throttled",
         {"delay_s": Param(60, 0, 3600, "under-voltage or throttling reported this long")}, power),
    Rule("temperature_high", "Nhiệt độ cao / temperature high",
         {"max_c": Param(75, 30, 110, "temperature at or above this many °C"),
          "delay_s": Param(60, 0, 3600, "that hot this long")}, temperature_high),
    Rule("mismatch_spike", "Tăng đột biến khuôn mặt không khớp / face-mismatch spike",
         {"min_count": Param(5, 1, 10_000, "at least this many face mismatches at one hall in the last hour"),
          "factor": Param(3, 1, 1000, "and more than this many times the hall's own hourly baseline"),
          "baseline_days": Param(7, 1, 30, "the baseline: that hall's mismatches over this many days before the last hour")},
         mismatch_spike, per_device=False),
)}


class RuleError(ValueError):
    """A rule change staff asked for that cannot be applied (unknown rule or parameter, value out of bounds)."""


def effective(overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{rule: {"enabled": bool, "params": {name: value}}}: the defaults with staff's stored changes over them."""
    out = {}
    for name, rule in RULES.items():
        stored = overrides.get(name, {})
        params = {k: float(stored.get("params", {}).get(k, prm.default)) for k, prm in rule.params.items()}
        out[name] = {"enabled": bool(stored.get("enabled", rule.defaults_enabled)), "params": params}
    return out


def validated(name: str, enabled: bool | None, params: dict[str, float]) -> dict[str, float]:
    """The parameter changes of one rule, checked against the rule's bounds; RuleError says what is wrong."""
    rule = RULES.get(name)
    if rule is None:
        raise RuleError(f"unknown rule {name!r}; rules: {', '.join(RULES)} / không có quy tắc này")
    out = {}
    for key, value in params.items():
        prm = rule.params.get(key)
        if prm is None:
            raise RuleError(f"rule {name} has no parameter {key!r}; it has {', '.join(rule.params)} / không có tham số này")
        if not prm.lo <= value <= prm.hi:
            raise RuleError(f"{name}.{key} must be between {prm.lo:g} and {prm.hi:g}, not {value:g} / giá trị ngoài giới hạn")
        out[key] = float(value)
    return out


def described(current: dict[str, dict[str, Any]], changed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rule for staff: title, enabled, each parameter's value, default, bounds and meaning, who changed it last."""
    return [{
        "rule": name, "title": rule.title, "enabled": current[name]["enabled"],
        "params": {k: {"value": current[name]["params"][k], "default": prm.default, "min": prm.lo, "max": prm.hi,
                       "help": prm.help} for k, prm in rule.params.items()},
        "updated_at": changed.get(name, {}).get("updated_at"), "updated_by": changed.get(name, {}).get("updated_by"),
    } for name, rule in RULES.items()]
