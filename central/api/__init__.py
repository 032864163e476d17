"""Central's HTTP side: REST API for staff and the attendance page."""

from .app import create_app

__all__ = ["create_app"]
