"""The `tunesmith` command: `app` and one module per command group (each registers its commands on it)."""

from . import catalog, continual, data, env, generation, recipes, runs, serve, sweep, train, ui, use  # noqa: F401  (each adds its commands to app)
from .app import app, arrange_help

arrange_help(app)

__all__ = ["app"]
