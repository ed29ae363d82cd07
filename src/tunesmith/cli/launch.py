"""`tunesmith train --nproc N`: the same command again in N processes under torchrun (torch.distributed.run).

The parent checks the recipe and the data first, so a mistake is one clear message rather than N
crashed workers; it fixes the run directory so every process writes (rank 0) and reads the same one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ..errors import TunesmithError


def launch(
    nproc: int,
    recipe,
    recipe_path: Path | None,
    resume: Path | None,
    output: Path | None,
    overwrite: bool,
    compare_direct: bool,
    overrides: list[str],
) -> int:
    if "LOCAL_RANK" in os.environ:
        raise TunesmithError(
            "--nproc inside a torchrun/accelerate launch: drop --nproc (the launcher already started the processes)."
        )
    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise TunesmithError(
            f"--nproc {nproc}: this machine has {torch.cuda.device_count()} GPU(s); use at most that many."
        )
    from ..pipeline import preflight
    from ..runs import rundir as runs

    if resume is None:
        preflight(recipe)
    run_dir = resume or output or (Path(recipe.output.dir) if recipe.output.dir else runs.default_dir("run"))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "tunesmith",
        "train",
    ]
    cmd += [str(recipe_path)] if recipe_path else []
    cmd += ["--resume", str(run_dir)] if resume else ["-o", str(run_dir)]
    cmd += ["--overwrite"] * overwrite + ["--compare-direct"] * compare_direct
    for item in overrides:
        cmd += ["--set", item]
    from ..engine.hardware import resolve_precision

    resolve_precision(recipe.train.precision)  # `auto` measures here once: every process reads the same figure
    env = dict(os.environ)
    if not torch.cuda.is_available():  # split the cores between the processes instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(cmd, env=env).returncode
