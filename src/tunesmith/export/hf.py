"""`--format hf`: a plain Hugging Face folder that loads with transformers alone (no tunesmith, no peft)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..runs import rundir


def write(predictor, source: Path, target: Path, **_) -> dict:
    if hasattr(predictor, "generate"):  # a decoder: LoRA already merged into the weights by the loader
        predictor.model.save_pretrained(target)
        predictor.tokenizer.save_pretrained(target)
        return {"loads_with": f"AutoModelForCausalLM.from_pretrained('{target}')"}
    # Classifier runs keep a plain folder already (plus head.json / thresholds.json where the method needs them).
    for entry in (source / rundir.MODEL_DIR).iterdir():
        if entry.is_file() and not entry.is_symlink():
            shutil.copy2(entry, target / entry.name)
    return {"loads_with": f"tunesmith.Predictor.load or transformers' Auto classes on '{target}' (see its config.json)"}
