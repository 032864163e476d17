"""What the kiosk says, Vietnamese first. Each screen has a Vietnamese and an English line.

Keys are the check-in outcomes (see checkin.Outcome) plus the idle and verifying screens.
Placeholders are filled with str.format: {name}, {meeting}, {cell}, {time}, {reason}.
"""

from __future__ import annotations

CATALOG: dict[str, dict[str, str]] = {
    "idle": {
        "vi": "Mời chạm thẻ đảng viên hoặc quét mã QR trên CCCD",
        "en": "Tap your member card or scan the QR code on your ID card",
    },
    "verifying": {
        "vi": "Đang xác minh khuôn mặt… Mời nhìn thẳng vào camera",
        "en": "Verifying your face… Please look at the camera",
    },
    "accepted": {"vi": "Đã điểm danh", "en": "Checked in"},
    "already": {"vi": "Đã điểm danh trước đó lúc {time}", "en": "Already checked in at {time}"},
    "face_mismatch": {"vi": "Khuôn mặt không khớp với thẻ", "en": "Face does not match the card"},
    "no_face": {"vi": "Không thấy khuôn mặt — mời nhìn thẳng vào camera rồi chạm lại", "en": "No face seen — look at the camera and tap again"},
    "several_faces": {"vi": "Có nhiều người trước camera — mời từng người một", "en": "Several faces — one person at a time, please"},
    "too_far": {"vi": "Mời đứng gần camera hơn rồi chạm lại", "en": "Please come closer to the camera and tap again"},
    "no_camera": {"vi": "Camera không hoạt động — báo kỹ thuật viên", "en": "Camera not working — call the technician"},
    "face_error": {"vi": "Lỗi xác minh khuôn mặt — mời thử lại", "en": "Face check failed — please try again"},
    "face_restarting": {
        "vi": "Hệ thống nhận diện đang khởi động lại — mời đồng chí thử lại sau ít giây",
        "en": "Face recognition is restarting — please try again in a few seconds",
    },
    "face_down": {
        "vi": "Hệ thống nhận diện đang ngừng hoạt động — mời đồng chí báo thư ký",
        "en": "Face recognition is stopped — please tell the secretary",
    },
    "system_error": {"vi": "Lỗi hệ thống — mời đồng chí báo thư ký", "en": "System error — please tell the secretary"},
    "no_template": {"vi": "Chưa có ảnh mẫu khuôn mặt — liên hệ thư ký chi bộ", "en": "No enrolled face — see the cell secretary"},
    "unknown_card": {"vi": "Thẻ không có trong danh sách", "en": "Card not recognised"},
    "other_cell": {"vi": "Đảng viên thuộc chi bộ khác ({cell})", "en": "Member of another cell ({cell})"},
    "no_meeting": {"vi": "Hiện không có cuộc họp nào", "en": "No meeting is taking place now"},
    "bad_qr": {"vi": "Mã QR không hợp lệ", "en": "Invalid QR code: {reason}"},
    "no_roster": {"vi": "Chưa nhận được danh sách từ trung tâm", "en": "No roster received from central yet"},
    "disk_full": {"vi": "Bộ nhớ đầy — không ghi được điểm danh. Báo kỹ thuật viên", "en": "Storage full — check-in not recorded. Call the technician"},
}


def say(key: str, **fields: str) -> dict[str, str]:
    entry = CATALOG[key]
    return {lang: text.format(**fields) if fields else text for lang, text in entry.items()}
