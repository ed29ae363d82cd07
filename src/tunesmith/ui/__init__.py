"""The dashboard: `tunesmith ui` (create_ui_app for mounting it elsewhere)."""

from .app import create_ui_app

__all__ = ["create_ui_app"]
