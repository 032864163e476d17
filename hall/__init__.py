"""The `hall` command: one entry point for the kiosk, central, technicians and the demo."""

__version__ = "0.1.0"
