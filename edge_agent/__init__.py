"""The kiosk service: readers and camera in, signed check-in records out."""
