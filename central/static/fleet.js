// What the three fleet pages share: the halls' time zone, building elements, a time in the halls' local time.
const HALL_TIME_ZONE = "Asia/Ho_Chi_Minh";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : c == null ? "" : String(c));
  return node;
}
function when(iso, opts) {  // "—" for none; the text as given if it is not a time
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString("vi-VN", { timeZone: HALL_TIME_ZONE, ...(opts || {}) });
}
