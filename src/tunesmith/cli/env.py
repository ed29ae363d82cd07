"""`tunesmith env` and `tunesmith --version`: what a bug report needs, printed without loading a model."""

from __future__ import annotations

import platform
from importlib import metadata

import typer

from .app import app, out
from .output import configure

PACKAGES = ("tunesmith", "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@app.command("env")
def env():
    """Versions, the CPU and its vector extensions, the GPU, and the precision `train.precision: auto` picks here."""
    import os

    import torch

    from ..engine.hardware import bf16_block_speedup, cpu, resolve_precision

    name, present = cpu()
    flags = [f for f in CPU_FLAGS if f in present]
    rows = {f"{p}": _version(p) for p in PACKAGES}
    rows.update(
        {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": f"{name} ({os.cpu_count()} cores)",
            "cpu flags": ", ".join(flags) or "none of " + ", ".join(CPU_FLAGS),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "precision auto": resolve_precision("auto"),
        }
    )
    if not torch.cuda.is_available() and "avx512_bf16" in present and "amx_bf16" not in present:
        rows["precision auto"] += f" (a bf16 block measured {bf16_block_speedup():.2f}x fp32 on this CPU)"

    for key, value in rows.items():
        out.print(f"{key:15} {value}", highlight=False)


def show_version(value: bool):
    if value:
        out.print(f"tunesmith {_version('tunesmith')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Print tunesmith's version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print debug messages."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only warnings and errors (no progress)."),
):
    """Fine-tune pre-trained language models on your own data."""
    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet contradict each other; give one.")
    configure("verbose" if verbose else "quiet" if quiet else "normal")
