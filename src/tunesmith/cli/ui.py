"""`tunesmith ui`: the dashboard over a folder of runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, friendly


@app.command()
@friendly
def ui(
    runs_dir: Annotated[Path, typer.Argument(help="The folder that holds your run directories.")] = Path("runs"),
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=0, max=65535)] = 7860,
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", envvar="TUNESMITH_API_KEY", help="Ask for this key before showing anything."),
    ] = None,
    collect: Annotated[
        Optional[Path],
        typer.Option(help="The folder of a `tunesmith serve --collect`: adds a Monitor page.", metavar="DIR"),
    ] = None,
    allow_train: Annotated[
        bool, typer.Option("--allow-train", help="Let the page start and stop runs (read-only without it).")
    ] = False,
):
    """A web page over RUNS_DIR: runs table, run pages with curves, compare, a base-vs-tuned playground, and
    (with --allow-train) new runs started and stopped from the browser."""
    from .serve import cap_malloc_arenas, needs_server_packages

    needs_server_packages("ui")
    import uvicorn

    from ..ui import create_ui_app

    if api_key is None and "TUNESMITH_API_KEY" in os.environ:  # set but empty: refused below, not ignored
        api_key = os.environ["TUNESMITH_API_KEY"]
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/] the dashboard listens on {host} without an API key: anyone who reaches this "
            "port sees your runs" + (" and can start training (--allow-train)." if allow_train else ".")
        )
    cap_malloc_arenas()
    application = create_ui_app(runs_dir, allow_train=allow_train, api_key=api_key, host=host, collect=collect)
    mode = "start and stop runs allowed" if allow_train else "read-only"
    err.print(f"Dashboard for {runs_dir} on http://{host}:{port} ({mode}). Ctrl-C stops.")
    uvicorn.run(application, host=host, port=port, log_level="warning")
