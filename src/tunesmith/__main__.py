"""`python -m tunesmith` = the `tunesmith` command."""

from .cli import app

app()
