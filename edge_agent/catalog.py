"""What the kiosk says, Vietnamese first. Each screen has a Vietnamese and an English line.

Keys are the check-in outcomes (see checkin.Outcome) plus the idle and verifying screens.
Placeholders are filled with str.format: {meeting}, {time}. Every refusal says what to do next.
"""

from __future__ import annotations

CATALOG: dict[str, dict[str, str]] = {
    "idle": {
        "vi": "Mời chạm thẻ đảng viên hoặc quét mã QR trên CCCD",
        "en": "Tap your member card or scan the QR code on your ID card",
    },
    # The idle prompt while the camera sees no usable face (the face worker's presence callback).
    "idle_look": {"vi": "Mời đồng chí nhìn vào camera", "en": "Please look at the camera"},
    # The idle prompt while face checking is not available (the face worker's fault).
    "idle_face_restarting": {
        "vi": "Hệ thống nhận diện đang khởi động lại — mời đồng chí chờ ít giây rồi chạm thẻ",
        "en": "Face recognition is restarting — please wait a few seconds, then tap your card",
    },
    "idle_face_down": {
        "vi": "Hệ thống nhận diện đang ngừng hoạt động — chạm thẻ, rồi thư ký hoặc bí thư xác nhận",
        "en": "Face recognition is stopped — tap your card, then the secretary or chair confirms",
    },
    "verifying": {
        "vi": "Đang xác minh khuôn mặt… Mời nhìn thẳng vào camera",
        "en": "Verifying your face… Please look at the camera",
    },
    "accepted": {"vi": "Đã điểm danh", "en": "Checked in"},
    "already": {"vi": "Đã điểm danh trước đó lúc {time}", "en": "Already checked in at {time}"},
    # Every refusal says what to do next: try again, or whom to see.
    "face_mismatch": {
        "vi": "Khuôn mặt không khớp với thẻ — mời nhìn thẳng vào camera và chạm lại, hoặc gặp thư ký",
        "en": "Face does not match the card — look at the camera and tap again, or see the secretary",
    },
    "no_face": {"vi": "Không thấy khuôn mặt — mời nhìn thẳng vào camera rồi chạm lại", "en": "No face seen — look at the camera and tap again"},
    "several_faces": {"vi": "Có nhiều người trước camera — mời từng người một chạm thẻ", "en": "Several faces — one person at a time, please tap again"},
    "too_far": {"vi": "Mời đứng gần camera hơn rồi chạm lại", "en": "Please come closer to the camera and tap again"},
    "no_camera": {"vi": "Camera không hoạt động — mời báo thư ký hoặc kỹ thuật viên", "en": "Camera not working — tell the secretary or the technician"},
    "face_error": {"vi": "Lỗi xác minh khuôn mặt — mời chạm lại", "en": "Face check failed — please tap again"},
    "face_restarting": {
        "vi": "Hệ thống nhận diện đang khởi động lại — mời đồng chí thử lại sau ít giây",
        "en": "Face recognition is restarting — please try again in a few seconds",
    },
    "face_down": {
        "vi": "Hệ thống nhận diện đang ngừng hoạt động — mời thư ký hoặc bí thư xác nhận, và báo kỹ thuật viên",
        "en": "Face recognition is stopped — the secretary or chair can confirm you; please tell the technician",
    },
    "system_error": {"vi": "Lỗi hệ thống — mời đồng chí báo thư ký", "en": "System error — please tell the secretary"},
    "not_live": {
        "vi": "Không xác nhận được người thật — mời đồng chí nhìn thẳng vào camera và chớp mắt, rồi chạm lại",
        "en": "Could not confirm a live person — look straight at the camera and blink, then tap again",
    },
    "no_template": {"vi": "Chưa có ảnh mẫu khuôn mặt — mời gặp thư ký chi bộ", "en": "No enrolled face — please see the cell secretary"},
    "unknown_card": {
        "vi": "Thẻ không có trong danh sách — mời gặp thư ký",
        "en": "Card not recognised — please see the secretary",
    },
    # {meeting} is the title of the meeting on now (central's names, never ids: the bundle carries no cell names).
    "other_cell": {
        "vi": "Đồng chí thuộc chi bộ khác — cuộc họp lúc này là «{meeting}». Mời gặp thư ký nếu cần",
        "en": "You belong to another cell — the meeting now is “{meeting}”. See the secretary if needed",
    },
    "no_meeting": {
        "vi": "Hiện không có cuộc họp nào của chi bộ đồng chí — mời xem giờ họp hoặc gặp thư ký",
        "en": "No meeting of your cell is on now — check the meeting time or see the secretary",
    },
    # The parser's reason is technical and English: it goes to the log, the member gets what to do.
    "bad_qr": {
        "vi": "Mã QR không đọc được — mời quét lại mã QR trên CCCD hoặc chạm thẻ đảng viên",
        "en": "QR code not readable — scan the QR on your ID card again or tap your member card",
    },
    "no_roster": {"vi": "Chưa nhận được danh sách từ trung tâm — mời báo thư ký", "en": "No roster received from central yet — please tell the secretary"},
    # The secretary's override (edge_agent/override.py). {member}: whom it is for; {officer}: the officer's name.
    "override_officer": {
        "vi": "Mời thư ký hoặc bí thư chi bộ chạm thẻ của mình để xác nhận",
        "en": "Secretary or chair: tap your own card to confirm",
    },
    "override_self": {
        "vi": "Đồng chí không thể tự xác nhận cho chính mình — mời thư ký hoặc bí thư còn lại chạm thẻ",
        "en": "You cannot confirm yourself — the other officer (secretary or chair), please tap your card",
    },
    "override_pin": {"vi": "Đồng chí {officer}: mời nhập mã PIN", "en": "{officer}: enter your PIN"},
    "override_wrong_pin": {"vi": "PIN sai, còn {left} lần — mời nhập lại", "en": "Wrong PIN, attempts left: {left} — enter it again"},
    # Only this officer is locked: the other officer can still confirm, so the member is sent to them.
    "override_locked": {
        "vi": "Đồng chí {officer} đã nhập sai PIN {attempts} lần — tạm khóa đến {until}. Mời thư ký hoặc bí thư còn lại xác nhận",
        "en": "{officer}: wrong PIN {attempts} times — locked until {until}. The other officer (secretary or chair) can confirm",
    },
    "override_no_pin": {
        "vi": "Đồng chí {officer} chưa có mã PIN — mời liên hệ cán bộ kỹ thuật",
        "en": "{officer} has no PIN yet — please contact the technician",
    },
    "override_accepted": {"vi": "Đã điểm danh (thư ký xác nhận)", "en": "Checked in (confirmed by the secretary)"},
    "disk_full": {"vi": "Bộ nhớ đầy — không ghi được điểm danh. Báo kỹ thuật viên", "en": "Storage full — check-in not recorded. Call the technician"},
}


def say(key: str, **fields: str) -> dict[str, str]:
    entry = CATALOG[key]
    return {lang: text.format(**fields) if fields else text for lang, text in entry.items()}
