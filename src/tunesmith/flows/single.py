"""One recipe, one method, one run directory: the registry picks the method, the session runs it."""

from __future__ import annotations

from pathlib import Path

from ..methods import method_for
from ..methods.session import run_method


def run_single(
    recipe, output_dir, overwrite: bool, resume: bool = False, files: dict | None = None, **options
) -> tuple[Path, dict]:
    """`options` go to the method (a staged domain-adaptation stage gets the target's texts)."""
    method = method_for(recipe, **options)
    if hasattr(method, "run"):  # a method that is not one training run (continual) runs itself
        return method.run(recipe, output_dir, overwrite, resume, files)
    return run_method(method, recipe, output_dir, overwrite, resume, files)
