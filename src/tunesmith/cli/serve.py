"""`tunesmith serve`: finished runs behind an OpenAI-compatible API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, friendly


@app.command()
@friendly
def serve(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Finished run directories; each is served under its folder name.")
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=0, max=65535)] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", envvar="TUNESMITH_API_KEY", help="Require Authorization: Bearer KEY on every route."),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per completion.", min=1)] = 1024,
    max_prompt_tokens: Annotated[int, typer.Option(help="Longest prompt accepted, in tokens.", min=1)] = 4096,
    max_inputs: Annotated[int, typer.Option(help="Most texts per /v1/classify request.", min=1)] = 256,
    threads: Annotated[
        Optional[int], typer.Option(help="Threads for model work (default: torch's, all cores).", min=1)
    ] = None,
    collect: Annotated[
        Optional[Path],
        typer.Option(
            help="Record every answered request (input as sent, answer, scores, version) in DIR/collect.sqlite3 "
            "and take feedback on POST /v1/feedback. Off unless given.",
            metavar="DIR",
        ),
    ] = None,
    collect_max_rows: Annotated[
        int, typer.Option(help="Most requests kept in the collection (the oldest tenth goes first).", min=100)
    ] = 1_000_000,
    quantize: Annotated[
        Optional[str],
        typer.Option(
            help="int8: classification-type runs answer from int8 weights on a CPU (~2x faster; answers move "
            "slightly, see benchmarks/serve.py). Generation runs keep their weights."
        ),
    ] = None,
):
    """Serve runs over HTTP: /v1/chat/completions and /v1/completions (generation runs, streaming too),
    /v1/classify (classification, multi-label, regression and entity runs), /v1/models, /health."""
    needs_server_packages("serve")
    import torch
    import uvicorn

    from ..errors import TunesmithError

    if api_key is None and "TUNESMITH_API_KEY" in os.environ:  # set but empty: click reads it as absent
        api_key = os.environ["TUNESMITH_API_KEY"]
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/] serving on {host} without an API key: anyone who reaches this port can use "
            f"the models "
            "(set TUNESMITH_API_KEY or --api-key)."
        )
    cap_malloc_arenas()
    if (
        threads
    ):  # e.g. several servers on one machine; measured on 2 cores, 16 clients: 2 threads 106 req/s, 1 thread 80
        torch.set_num_threads(threads)
    from ..serve import Limits, create_app

    names = [p.name for p in run_dirs]
    if len(set(names)) < len(names):
        raise TunesmithError(
            f"Two run directories share a folder name ({', '.join(sorted(names))}); each model is addressed "
            "by its folder name, so rename or copy one."
        )
    limits = Limits(max_inputs=max_inputs, max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens)
    application = create_app(run_dirs, api_key, limits, quantize, collect=collect, collect_max_rows=collect_max_rows)
    err.print(
        f"Serving {', '.join(names)} on http://{host}:{port} (OpenAI-compatible: /v1/models, /v1/chat/completions, "
        f"/v1/classify, /metrics){' with an API key' if api_key else ''}"
        f"{', classifiers in ' + quantize if quantize else ''}"
        f"{f'; recording requests in {collect} (inputs as sent)' if collect else ''}. "
        "Ctrl-C stops (requests in flight finish)."
    )
    uvicorn.run(application, host=host, port=port, log_level="warning")


def needs_server_packages(command: str) -> None:
    """The web commands' packages are an extra (`tunesmith[serve]`): say so instead of an import traceback."""
    import importlib.util

    from ..errors import TunesmithError

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise TunesmithError(f"tunesmith {command} needs {' and '.join(missing)}: pip install 'tunesmith[serve]'")


def cap_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each new thread its own malloc arena; a server's worker threads then hold memory they freed in
    many arenas and its resident size creeps up. Two arenas: on 2 cores with 16 clients, RSS levelled off at
    ~1.34 GB instead of still rising past 1.5 GB after 120 s, with no loss of throughput (benchmarks/serve_soak.py).
    A MALLOC_ARENA_MAX the user set wins; other C libraries are left alone."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass
