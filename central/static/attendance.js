// What the attendance pages share: labels in Vietnamese and English, reading the API with the staff session,
// formatting, the count cards (each a link to the members behind it) and the monthly trend chart.
"use strict";
const HALL_TIME_ZONE = "Asia/Ho_Chi_Minh";
const STATUS_LABEL = {
  present: ["Có mặt", "Present"], late: ["Đi muộn", "Late"], excused: ["Vắng có lý do", "Excused"],
  unexcused: ["Vắng không lý do", "Unexcused"], pending: ["Chưa điểm danh", "Not checked in yet"],
};
const REASON_LABEL = {  // central/attendance_sheet.py's reasons
  illness: ["Ốm đau", "Illness"], work: ["Đi công tác", "Work trip"], leave: ["Nghỉ phép", "Leave"],
  family: ["Việc gia đình", "Family matter"], other: ["Lý do khác", "Other reason"],
};
const STANDING_LABEL = { probationary: ["Dự bị", "Probationary"], official: ["Chính thức", "Official"] };
const LEVEL_LABEL = { warning: ["Cảnh báo", "Warning"], rule: ["Đến mức quy định", "Rule level"] };
const ROLE_LABEL = { viewer: ["người xem", "viewer"], secretary: ["thư ký", "secretary"],
                     technician: ["kỹ thuật viên", "technician"], admin: ["quản trị", "admin"] };
const STATE_LABEL = { upcoming: ["Sắp diễn ra", "Upcoming"], current: ["Đang họp", "In progress"], past: ["Đã kết thúc", "Ended"] };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) node.setAttribute(k, v === true ? "" : v);
  for (const c of children) node.append(c instanceof Node ? c : c == null ? "" : String(c));
  return node;
}
function bi(pair, fallback) {  // "Vietnamese English" with the English small and grey
  if (!pair) return document.createTextNode(fallback == null ? "—" : String(fallback));
  return el("span", {}, pair[0] + " ", el("span", { class: "en" }, pair[1]));
}
function statusBadge(status) {
  return el("span", { class: "badge st-" + status, "data-status": status }, bi(STATUS_LABEL[status], status));
}
function levelBadge(level) {
  return el("span", { class: "badge lvl-" + level, "data-level": level }, bi(LEVEL_LABEL[level], level));
}

// Words for an error the API gave (FastAPI's detail is a sentence, or a list of field errors).
function detailText(data, status) {
  const d = data && data.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map(e => (e.loc || []).slice(1).join(".") + ": " + e.msg).join("; ");
  return "lỗi máy chủ / server error " + status;
}
async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) { location.href = "/login"; throw new Error("login"); }
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new Error(detailText(data, r.status));
  return data;
}
async function post(url, body) {
  const r = await fetch(url, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
                               body: body == null ? null : JSON.stringify(body) });
  if (r.status === 401) { location.href = "/login"; throw new Error("login"); }
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new Error(detailText(data, r.status));
  return data;
}
function showError(e) {
  const box = document.getElementById("error");
  if (e && e.message === "login") return;
  box.textContent = e ? "Lỗi / Error: " + (e.message || e) : "";
}

const PCT = new Intl.NumberFormat("vi-VN", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
function pct(rate) { return rate == null ? "—" : PCT.format(rate * 100) + " %"; }
function dayText(day) {  // YYYY-MM-DD as written in Vietnam
  if (!day) return "—";
  const [y, m, d] = day.split("-");
  return d + "/" + m + "/" + y;
}
function monthText(month) { const [y, m] = month.split("-"); return m + "/" + y; }
function timeText(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString("vi-VN", { timeZone: HALL_TIME_ZONE, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}
function whenText(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString("vi-VN", { timeZone: HALL_TIME_ZONE, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
                                                     day: "2-digit", month: "2-digit", year: "numeric" });
}
function thisYear() { return +new Date().toLocaleDateString("en-CA", { timeZone: HALL_TIME_ZONE }).slice(0, 4); }
function pathId() { return decodeURIComponent(location.pathname.split("/").pop()); }
function params() { return new URLSearchParams(location.search); }
// Move to another view of the same page (a filter, a year) without reloading it: the address says what is shown.
function setParams(changes, render) {
  const p = params();
  for (const [k, v] of Object.entries(changes)) if (v == null || v === "") p.delete(k); else p.set(k, v);
  const q = p.toString();
  history.pushState(null, "", location.pathname + (q ? "?" + q : ""));
  render();
}
function linkTo(href, text, attrs) {
  return el("a", { href, class: "num", ...(attrs || {}) }, text);
}
function hrefWith(changes) {
  const p = params();
  for (const [k, v] of Object.entries(changes)) if (v == null || v === "") p.delete(k); else p.set(k, v);
  const q = p.toString();
  return location.pathname + (q ? "?" + q : "");
}
// A link to another view of this page: followed in place (no reload), still a real address to copy or open.
// A list filtered by a count card (?show=…): the note naming the filter with the way back to everyone, and the
// list's count in its heading. ``label`` is the filter's [Vietnamese, English] name, or null when not filtered.
function filterNote(label, shown, render, allText) {
  const note = document.getElementById("filter-note");
  note.hidden = !label;
  if (label) note.replaceChildren("Đang lọc / Showing: ", el("b", {}, label[0]), " ", el("span", { class: "en" }, label[1]),
    " (" + shown.length + ") — ", viewLink({ show: null }, allText || "xem tất cả / show everyone", { id: "show-all" }, render));
  const count = document.getElementById("shown-count");
  count.textContent = "(" + shown.length + ")";
  count.dataset.count = shown.length;
}
function viewLink(changes, text, attrs, render) {
  const a = el("a", { href: hrefWith(changes), ...(attrs || {}) }, text);
  a.addEventListener("click", ev => {
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    setParams(changes, render);
  });
  return a;
}
function card(vi, en, value, opts) {
  const o = opts || {};
  const body = [el("span", { class: "label" }, vi, el("span", { class: "en" }, en)),
                el("span", { class: "v", "data-value": o.raw == null ? value : o.raw }, value)];
  const attrs = { class: "card " + (o.cls || ""), "data-count": o.key, title: o.title };
  if (o.changes) {
    const a = viewLink(o.changes, "", attrs, o.render);
    a.replaceChildren(...body);
    if (o.current) a.setAttribute("aria-current", "true");
    return a;
  }
  if (o.href) return el("a", { href: o.href, ...attrs }, ...body);
  return el("div", attrs, ...body);
}

// The four pages' header, built once here: the page's title (data-vi/data-en on <header>), links to the attendance
// landing, the meeting's cell (data-cell-link: the sheet fills it in) and the fleet, who is logged in, log out.
function staffHeader() {
  const h = document.querySelector("header[data-vi]");
  const link = (href, vi, en, id) => el("a", { href, id, hidden: id ? true : null }, vi + " ", el("span", { class: "en" }, en));
  h.replaceChildren(
    el("h1", { id: "title" }, h.dataset.vi + " ", el("span", { class: "en" }, h.dataset.en)),
    el("nav", {}, link("/", "Điểm danh", "Attendance"), "cellLink" in h.dataset ? link("#", "Chi bộ", "Cell", "cell-link") : null,
       link("/fleet", "Thiết bị", "Fleet")),
    el("span", { class: "right" }, el("span", { id: "who", "data-role": "" }),
       el("form", { method: "post", action: "/logout", style: "display:inline;margin:0" },
          el("button", { type: "submit" }, "Đăng xuất ", el("span", { class: "en" }, "Log out")))));
}

async function whoAmI() {
  const me = await getJSON("/api/me");
  const who = document.getElementById("who");
  const role = ROLE_LABEL[me.role];
  who.textContent = me.name + " (" + (role ? role[0] + " / " + role[1] : me.role) + ")";
  who.dataset.role = me.role;
  return me;
}
// Who may excuse, close and amend: the secretary and the staff above (the API checks again).
function canWrite(me) { return ["secretary", "technician", "admin"].includes(me.role); }

function yearSelect(select, year, onChange) {
  const now = thisYear();
  const years = [];
  for (let y = now; y >= now - 5; y--) years.push(y);
  if (!years.includes(year)) years.push(year);
  select.replaceChildren(...years.sort((a, b) => b - a).map(y => el("option", { value: y, selected: y === year }, y)));
  select.onchange = () => onChange(+select.value);
}

// The monthly trend: the rate and the rate without excused absences, in percent, one point a month.
let trendChart = null;
function drawTrend(boxId, months) {
  const box = document.getElementById(boxId);
  trendChart?.destroy();
  trendChart = null;
  const xs = months.map(m => Date.UTC(+m.month.slice(0, 4), +m.month.slice(5, 7) - 1, 1) / 1000);
  const rate = months.map(m => m.totals.rate == null ? null : Math.round(m.totals.rate * 1000) / 10);
  const excl = months.map(m => m.totals.rate_excluding_excused == null ? null : Math.round(m.totals.rate_excluding_excused * 1000) / 10);
  box.dataset.points = rate.filter(v => v != null).length;
  box.dataset.rates = JSON.stringify(months.map(m => m.totals.rate));
  if (!months.length) return;
  const monthOf = ts => { const d = new Date(ts * 1e3); return String(d.getUTCMonth() + 1).padStart(2, "0") + "/" + d.getUTCFullYear(); };
  trendChart = new uPlot({
    width: Math.max(320, box.clientWidth - 4), height: 220,
    tzDate: ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    series: [
      { label: "Tháng / Month", value: (u, v) => v == null ? "—" : monthOf(v) },
      { label: "Tỷ lệ / Rate %", stroke: "#8b1a1a", width: 2, fill: "#8b1a1a18", spanGaps: false,
        value: (u, v) => v == null ? "—" : PCT.format(v) + " %" },
      { label: "Trừ vắng có lý do / Without excused %", stroke: "#174a8b", width: 2, dash: [6, 4],
        value: (u, v) => v == null ? "—" : PCT.format(v) + " %" },
    ],
    axes: [{ values: (u, splits) => splits.map(monthOf), space: 60 }, { values: (u, splits) => splits.map(v => v + " %") }],
    scales: { x: { time: true, range: () => [xs[0] - 86400 * 10, xs[xs.length - 1] + 86400 * 10] }, y: { range: [0, 100] } },
  }, [xs, rate, excl], box);
}
window.addEventListener("resize", () => {
  if (!trendChart) return;
  trendChart.setSize({ width: Math.max(320, trendChart.root.parentElement.clientWidth - 4), height: 220 });
});

function totalsCards(T, opts) {  // T: the API's totals; opts.link(key) → the changes that show those members, or null
  const o = opts || {};
  const link = key => (o.link ? o.link(key) : null);
  const mk = (key, vi, en, value, extra) => card(vi, en, value, { key, changes: link(key), render: o.render,
                                                                   current: o.current === key, ...(extra || {}) });
  const cards = [
    mk("expected", "Phải dự", "Expected", T.expected),
    mk("attended", "Đã dự", "Attended", T.attended),
    mk("present", "Đúng giờ", "On time", T.present),
    mk("late", "Đi muộn", "Late", T.late, { cls: T.late ? "warn" : "" }),
    mk("excused", "Vắng có lý do", "Excused", T.excused),
    mk("unexcused", "Vắng không lý do", "Unexcused", T.unexcused, { cls: T.unexcused ? "bad" : "" }),
  ];
  if (T.pending || o.showPending) cards.push(mk("pending", "Chưa điểm danh", "Not yet in", T.pending));
  cards.push(mk("overrides", "Thư ký xác nhận", "Confirmed by secretary", T.overrides));
  if (T.not_expected) cards.push(mk("not_expected", "Ngoài danh sách", "Not expected", T.not_expected));
  // green only when it is good news: under the low-rate threshold (the cell API's, else its 50 % default) in red
  const low = o.threshold != null ? o.threshold : 0.5;
  const rateCls = r => "rate" + (r != null && r < low ? " low" : "");
  cards.push(mk("rate", "Tỷ lệ dự họp", "Attendance rate", pct(T.rate), { cls: rateCls(T.rate), raw: T.rate == null ? "" : T.rate }));
  cards.push(mk("rate_excluding_excused", "Tỷ lệ trừ vắng có lý do", "Rate without excused", pct(T.rate_excluding_excused),
                { cls: rateCls(T.rate_excluding_excused), raw: T.rate_excluding_excused == null ? "" : T.rate_excluding_excused }));
  return cards;
}
