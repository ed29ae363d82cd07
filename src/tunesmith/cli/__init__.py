"""The `tunesmith` command: `app` and one module per command group (each registers its commands on it)."""

from . import continual, data, generation, runs  # noqa: F401  (update · data check · chat, generate, export · runs)
from .app import app

__all__ = ["app"]
