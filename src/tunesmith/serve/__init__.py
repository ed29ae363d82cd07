"""Serve finished runs over HTTP: `create_app(runs)` is the ASGI app `tunesmith serve` runs with uvicorn."""

from .app import Limits, create_app

__all__ = ["Limits", "create_app"]
