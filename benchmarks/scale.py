"""Data at any size: data check, tokenization and a bounded number of training steps at 10k / 100k / 1M rows,
tunesmith beside a plain Hugging Face script (datasets + Trainer), each with a cold cache and again warm.

    python benchmarks/scale.py [--sizes 10000 100000 1000000] [--steps 20] [--publish]
    python benchmarks/scale.py --task generation [--sizes 10000 100000 300000] [--steps 10] [--publish]
    python benchmarks/scale.py --task multi_label [--sizes 10000 100000 1000000] [--steps 20] [--publish]
    python benchmarks/scale.py --task token_classification [--sizes 10000 100000 1000000] [--steps 20] [--publish]

Rows: sst2's training sentences drawn with replacement, each made unique by a number appended (no duplicate
warnings), written as one CSV per size; sst2's validation set (872 rows) validates. MiniLM-L6, max_length 64,
batch 32, `train.max_steps` steps, no base line (the Trainer script has none). Each command runs in its own
process; its peak RSS is the kernel's figure for that process (os.wait4). tunesmith's stage times come from
its metrics.json (prepare = read + tokenize; train; evaluate); the data check is also run alone
(`tunesmith data check`). "Cold": tunesmith's data and token tables / the Hugging Face datasets cache emptied first;
"warm": the same command again.

Baseline: datasets.load_dataset("csv") + map(batched=True) tokenization + transformers.Trainer with
max_steps, DataCollatorWithPadding, no evaluation during training, then one evaluate() on the validation set:
the HF way, memory-mapped Arrow from end to end.

`--task generation`: chat fine-tuning instead. Rows: bitext_customer_support_sft's prompt/response pairs drawn with
replacement, each prompt made unique by a number appended, one JSONL file per size; its first 200 validation pairs
validate. SmolLM2-135M-Instruct with LoRA, max_length 128, batch 8, `train.max_steps` steps, the loss on the
answers, no base line and no generated answers (the validation loss alone). Baseline: a plain TRL script,
datasets.load_dataset("json") into prompt/completion conversations + SFTTrainer(max_steps, LoRA on every linear
layer, SFTConfig's defaults otherwise: bf16 and gradient checkpointing on), then one evaluate().

`--task multi_label`: texts with label sets instead. Rows: goemotions_multilabel's training comments drawn with
replacement, each made unique by a number appended, their labels joined by '|', one CSV per size; the first 1,000
rows of its validation set validate. MiniLM-L6 as for classification, `data.multi_label: true`. Baseline: the same
datasets + Trainer script with a 0/1 vector per row and problem_type="multi_label_classification".

`--task token_classification`: tagged sentences instead. Rows: bc5cdr's training sentences (chemicals and
diseases) drawn with replacement, each made unique by a word `#N` tagged O appended, one JSONL file per size; the
first 1,000 sentences of its validation set validate. MiniLM-L6 as for classification. Baseline: the Hugging Face
token-classification recipe (run_ner.py's steps): datasets.load_dataset("json"), the tag list from the training
column, tokenization with each word's first piece labelled (-100 elsewhere), Trainer with
DataCollatorForTokenClassification, then seqeval's entity F1 on the validation set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SST2 = HERE.parents[0].parent / "shared" / "data" / "sst2"
EMOTIONS = HERE.parents[0].parent / "shared" / "data" / "goemotions_multilabel"
TAGGED = HERE.parents[0].parent / "shared" / "data" / "medical_ner_bc5cdr"
CHATS = HERE.parents[0].parent / "shared" / "data" / "bitext_customer_support_sft"

TRAINER_SCRIPT = r"""
import sys, time
import numpy as np
from datasets import load_dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)

train, validation, weights, steps, out = sys.argv[1:6]
start = time.perf_counter()
ds = load_dataset("csv", data_files={"train": train, "validation": validation})
labels = sorted(ds["train"].unique("label"))
index = {label: i for i, label in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(weights)
ds = ds.map(lambda b: {**tok(b["text"], truncation=True, max_length=64), "labels": [index[x] for x in b["label"]]},
            batched=True, remove_columns=["text", "label"])
prepared = time.perf_counter() - start
model = AutoModelForSequenceClassification.from_pretrained(weights, num_labels=len(labels))
args = TrainingArguments(out, max_steps=int(steps), per_device_train_batch_size=32, learning_rate=5e-5,
                         eval_strategy="no", save_strategy="no", report_to=[], logging_steps=10, use_cpu=True,
                         disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=ds["train"], data_collator=DataCollatorWithPadding(tok))
t0 = time.perf_counter()
trainer.train()
trained = time.perf_counter() - t0
t0 = time.perf_counter()
pred = trainer.predict(ds["validation"])
accuracy = float((pred.predictions.argmax(-1) == pred.label_ids).mean())
print("RESULT", {"prepare_s": prepared, "train_s": trained, "evaluate_s": time.perf_counter() - t0,
                 "accuracy": accuracy})
"""


TRL_SCRIPT = r"""
import sys, time
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

train, validation, weights, steps, out = sys.argv[1:6]
start = time.perf_counter()
ds = load_dataset("json", data_files={"train": train, "validation": validation})
ds = ds.map(lambda b: {"prompt": [[{"role": "user", "content": p}] for p in b["prompt"]],
                       "completion": [[{"role": "assistant", "content": r}] for r in b["response"]]},
            batched=True, remove_columns=ds["train"].column_names)
tok = AutoTokenizer.from_pretrained(weights)
args = SFTConfig(out, max_steps=int(steps), per_device_train_batch_size=8, learning_rate=2e-4, max_length=128,
                 eval_strategy="no", save_strategy="no", report_to=[], logging_steps=10, use_cpu=True,
                 disable_tqdm=True)
trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(weights), args=args, train_dataset=ds["train"],
                     eval_dataset=ds["validation"], processing_class=tok,
                     peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
prepared = time.perf_counter() - start
t0 = time.perf_counter()
trainer.train()
trained = time.perf_counter() - t0
t0 = time.perf_counter()
loss = trainer.evaluate()["eval_loss"]
print("RESULT", {"prepare_s": prepared, "train_s": trained, "evaluate_s": time.perf_counter() - t0,
                 "validation_loss": loss})
"""


def _edited(script: str, edits: list[tuple[str, str]]) -> str:
    """`script` with each (old, new) replaced; an old text the script no longer holds is an error, not a baseline
    that silently stays the classification script."""
    for old, new in edits:
        if old not in script:
            raise AssertionError(f"the Trainer script no longer holds {old!r}")
        script = script.replace(old, new)
    return script


# the classification script with a 0/1 vector per row: labels joined by '|', BCE on a sigmoid per label, micro-F1
# at a 0.5 threshold (logit 0)
MULTI_LABEL_SCRIPT = _edited(
    TRAINER_SCRIPT,
    [
        (
            'labels = sorted(ds["train"].unique("label"))',
            'labels = sorted({x for cell in ds["train"]["labels"] if cell for x in cell.split("|")})',
        ),
        (
            '"labels": [index[x] for x in b["label"]]}',
            '"labels": [[float(x in (c or "").split("|")) for x in labels] for c in b["labels"]]}',
        ),
        ('remove_columns=["text", "label"]', 'remove_columns=["text", "labels"]'),
        ("num_labels=len(labels))", 'num_labels=len(labels), problem_type="multi_label_classification")'),
        (
            "accuracy = float((pred.predictions.argmax(-1) == pred.label_ids).mean())",
            "hit, gold = pred.predictions > 0, pred.label_ids > 0.5\n"
            "f1_micro = float(2 * (hit & gold).sum() / max(hit.sum() + gold.sum(), 1))",
        ),
        ('"accuracy": accuracy}', '"f1_micro": f1_micro}'),
    ],
)
TOKEN_SCRIPT = r"""
import sys, time
from datasets import load_dataset
from seqeval.metrics import f1_score
from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer,
                          TrainingArguments)

train, validation, weights, steps, out = sys.argv[1:6]
start = time.perf_counter()
ds = load_dataset("json", data_files={"train": train, "validation": validation})
labels = sorted({tag for row in ds["train"]["tags"] for tag in row})  # run_ner.py's get_label_list
index = {label: i for i, label in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(weights)


def align(batch):  # run_ner.py's tokenize_and_align_labels: each word's first piece carries its tag
    enc = tok(batch["tokens"], truncation=True, max_length=64, is_split_into_words=True)
    enc["labels"] = []
    for n, tags in enumerate(batch["tags"]):
        seen, row = set(), []
        for w in enc.word_ids(n):
            row.append(-100 if w is None or w in seen else index[tags[w]])
            seen.add(w)
        enc["labels"].append(row)
    return enc


ds = ds.map(align, batched=True, remove_columns=ds["train"].column_names)
prepared = time.perf_counter() - start
model = AutoModelForTokenClassification.from_pretrained(weights, num_labels=len(labels))
args = TrainingArguments(out, max_steps=int(steps), per_device_train_batch_size=32, learning_rate=5e-5,
                         eval_strategy="no", save_strategy="no", report_to=[], logging_steps=10, use_cpu=True,
                         disable_tqdm=True)
collate = DataCollatorForTokenClassification(tok)
trainer = Trainer(model=model, args=args, train_dataset=ds["train"], data_collator=collate)
t0 = time.perf_counter()
trainer.train()
trained = time.perf_counter() - t0
t0 = time.perf_counter()
pred = trainer.predict(ds["validation"])
gold = [[labels[y] for y in row if y != -100] for row in pred.label_ids]
guess = [[labels[p] for p, y in zip(ps, row) if y != -100]
         for ps, row in zip(pred.predictions.argmax(-1), pred.label_ids)]
print("RESULT", {"prepare_s": prepared, "train_s": trained, "evaluate_s": time.perf_counter() - t0,
                 "f1": float(f1_score(gold, guess))})
"""
TASKS = {  # task -> (model, validation file, baseline script, its name, default sizes, default steps)
    "classification": (
        "minilm-l6",
        SST2 / "validation.csv",
        TRAINER_SCRIPT,
        "Trainer",
        [10_000, 100_000, 1_000_000],
        20,
    ),
    "generation": ("smollm2-135m-instruct", None, TRL_SCRIPT, "TRL", [10_000, 100_000, 300_000], 10),
    "multi_label": (
        "minilm-l6",
        None,
        MULTI_LABEL_SCRIPT,
        "Trainer",
        [10_000, 100_000, 1_000_000],
        20,
    ),
    "token_classification": ("minilm-l6", None, TOKEN_SCRIPT, "Trainer", [10_000, 100_000, 1_000_000], 20),
}


def make_chats(folder: Path, sizes: list[int]) -> dict[int, Path]:
    """Prompt/response JSONL files of each size, and the 200 validation pairs beside them."""
    files = _drawn_jsonl(
        folder,
        sizes,
        CHATS / "train.jsonl",
        lambda row, i: {"prompt": f"{row['prompt']} #{i}", "response": row["response"]},
    )
    validation = [json.loads(line) for line in (CHATS / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = (json.dumps({"prompt": row["prompt"], "response": row["response"]}) for row in validation[:200])
    (folder / "validation.jsonl").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    return files


def make_tagged(folder: Path, sizes: list[int]) -> dict[int, Path]:
    """Tagged-sentence JSONL files of each size, and the 1,000 validation sentences beside them."""
    files = _drawn_jsonl(
        folder,
        sizes,
        TAGGED / "train.jsonl",
        lambda row, i: {"tokens": [*row["tokens"], f"#{i}"], "tags": [*row["tags"], "O"]},
    )
    validation = (TAGGED / "validation.jsonl").read_text(encoding="utf-8").splitlines()[:1000]
    (folder / "validation.jsonl").write_text("\n".join(validation) + "\n", encoding="utf-8")
    return files


def _drawn_jsonl(folder: Path, sizes: list[int], source_file: Path, unique) -> dict[int, Path]:
    """A JSONL file per size: rows of `source_file` drawn with replacement (seeded), each made unique by
    `unique(row, its number)`."""
    import numpy as np

    source = [json.loads(line) for line in source_file.read_text(encoding="utf-8").splitlines()]
    rng, files = np.random.default_rng(0), {}
    for n in sizes:
        files[n] = folder / f"train_{n}.jsonl"
        with files[n].open("w", encoding="utf-8") as out:
            for i, at in enumerate(rng.integers(0, len(source), n)):
                out.write(json.dumps(unique(source[at], i)) + "\n")
    return files


def make_rows(folder: Path, sizes: list[int], source_file: Path = SST2 / "train.csv") -> dict[int, Path]:
    import numpy as np
    import pandas as pd

    source = pd.read_csv(source_file, keep_default_na=False)
    if source_file.parent == EMOTIONS:  # 1,000 validation rows: scoring all 5,426 would outlast the 20 steps
        pd.read_csv(EMOTIONS / "validation.csv", keep_default_na=False).head(1000).to_csv(
            folder / "validation.csv", index=False
        )
    rng, files = np.random.default_rng(0), {}
    for n in sizes:
        frame = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
        frame["text"] = frame["text"] + " #" + pd.Series(np.arange(n)).astype(str)
        files[n] = folder / f"train_{n}.csv"
        frame.to_csv(files[n], index=False)
    return files


def measured(cmd: list[str], env: dict) -> dict:
    """Wall time, the process's own peak RSS (os.wait4) and, sampled from /proc every 20 ms, the largest
    anonymous (heap) and file-backed (memory-mapped files: tables, weights) parts of it seen; and its output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        parts = {"RssAnon": 0, "RssFile": 0}
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps it, rusage and all, once it has ended
            if pid:
                break
            for key, kb in _rss_parts(proc.pid).items():
                parts[key] = max(parts[key], kb)
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    return {
        "wall_s": time.perf_counter() - start,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "peak_anon_mb": parts["RssAnon"] / 1024,
        "peak_file_mb": parts["RssFile"] / 1024,
        "output": output,
    }


def _rss_parts(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = (line.partition(":") for line in status)
            return {k: int(v.split()[0]) for k, _, v in fields if k in ("RssAnon", "RssFile")}
    except (OSError, ValueError):
        return {}


def tunesmith_run(folder: Path, train: Path, steps: int, env: dict, name: str, task: str) -> dict:
    import yaml

    recipe = {
        "task": task,
        "model": TASKS[task][0],
        "data": {"train": str(train), "validation": str(_validation(folder, task))},
        "eval": {"baseline": "none"},
        "train": {"max_steps": steps, "batch_size": 32, "max_length": 64, "lr": 5e-5},
    }
    if task == "multi_label":  # a classification recipe whose label column holds sets
        recipe["task"] = "classification"
        recipe["data"].update(label_column="labels", multi_label=True, label_separator="|")
    if task == "token_classification":
        recipe["data"] = {"train": str(train), "validation": str(folder / "validation.jsonl")}
    if task == "generation":  # the loss alone: no answers generated, as the TRL script generates none
        recipe["eval"]["max_samples"] = 0
        recipe["train"] = {"max_steps": steps, "batch_size": 8, "max_length": 128, "lr": 2e-4}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = folder / f"run-{name}"
    got = measured([sys.executable, "-m", "tunesmith", "-q", "train", str(path), "-o", str(run), "--overwrite"], env)
    metrics = json.loads((run / "metrics.json").read_text())
    t = metrics["train"]
    got.update(
        prepare_s=t["prepare_s"],
        train_s=t["runtime_s"],
        evaluate_s=t["evaluate_s"],
        **(
            {"accuracy": metrics["tuned"]["accuracy"]}
            if task == "classification"
            else {"f1_micro": metrics["tuned"]["f1_micro"]}
            if task == "multi_label"
            else {"f1": metrics["tuned"]["f1"]}
            if task == "token_classification"
            else {"validation_loss": metrics["tuned"]["loss"]}
        ),
    )
    shutil.rmtree(run)
    return got


def _validation(folder: Path, task: str) -> Path:
    jsonl = task in ("generation", "token_classification")
    return TASKS[task][1] or folder / ("validation.jsonl" if jsonl else "validation.csv")


def trainer_run(folder: Path, train: Path, steps: int, env: dict, weights: str, task: str) -> dict:
    script = folder / "baseline.py"
    script.write_text(TASKS[task][2])
    out = folder / "baseline-out"
    cmd = [sys.executable, str(script), str(train), str(_validation(folder, task)), weights]
    got = measured([*cmd, str(steps), str(out)], env)
    line = next(x for x in got["output"].splitlines() if x.startswith("RESULT "))
    got.update(eval(line[7:], {}))  # noqa: S307  (our own script's dict of floats)
    shutil.rmtree(out, ignore_errors=True)
    return got


def _weights(env: dict, model: str) -> str:
    """The model's folder, found by a child process: this one must not import torch, since a child's peak RSS
    (os.wait4) starts from what its parent held when it was forked."""
    code = f"from tunesmith.models.loading import resolve_weights; print(resolve_weights({model!r}))"
    found = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return found.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), default="classification")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--tunesmith-only",
        action="store_true",
        help="skip the baseline script: tunesmith's rows alone (another checkout's, with PYTHONPATH=OTHER/src)",
    )
    parser.add_argument("--publish", action="store_true", help="replace this benchmark's entry in benchmarks/README.md")
    parser.add_argument("--publish-json", type=Path, help="publish the figures an earlier run saved with --json")
    args = parser.parse_args()
    args.sizes, args.steps = args.sizes or TASKS[args.task][4], args.steps or TASKS[args.task][5]
    if args.publish_json:
        return publish(json.loads(args.publish_json.read_text()), args)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.task == "generation":
            files = make_chats(folder, args.sizes)
        elif args.task == "token_classification":
            files = make_tagged(folder, args.sizes)
        else:
            files = make_rows(
                folder, args.sizes, EMOTIONS / "train.csv" if args.task == "multi_label" else SST2 / "train.csv"
            )
        cache, hf_cache = folder / "tunesmith-cache", folder / "hf-datasets"
        env = {**os.environ, "NO_COLOR": "1", "HF_DATASETS_CACHE": str(hf_cache), "HF_HUB_OFFLINE": "1"}
        models = Path(os.environ.get("TUNESMITH_CACHE") or Path.home() / ".cache" / "tunesmith")
        env["TUNESMITH_CACHE"] = str(cache)
        if (models / "models").is_dir():  # converted model weights: shared, they are not what is measured
            shutil.copytree(models / "models", cache / "models")
        weights, base = _weights(env, TASKS[args.task][0]), TASKS[args.task][3]
        for n, train in files.items():
            row = {"rows": n}
            check = [sys.executable, "-m", "tunesmith", "-q", "data", "check", str(train)]
            if args.task in ("generation", "token_classification"):
                check += ["--task", args.task, "--model", TASKS[args.task][0]]
            row["data check"] = measured(check, env)
            # cold: neither the token table nor the data table of the check
            for kept in ("tokens", "tables", "chats", "tagged"):
                shutil.rmtree(cache / kept, ignore_errors=True)
            row["tunesmith cold"] = tunesmith_run(folder, train, args.steps, env, f"cold-{n}", args.task)
            row["tunesmith warm"] = tunesmith_run(folder, train, args.steps, env, f"warm-{n}", args.task)
            if args.tunesmith_only:
                _dropped_outputs(row)
                results.append(row)
                print(json.dumps(row, indent=1), flush=True)
                continue
            shutil.rmtree(hf_cache, ignore_errors=True)
            row[f"{base} cold"] = trainer_run(folder, train, args.steps, env, weights, args.task)
            row[f"{base} warm"] = trainer_run(folder, train, args.steps, env, weights, args.task)
            _dropped_outputs(row)
            results.append(row)
            print(json.dumps(row, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.publish:
        publish(results, args)


READING_NOTES = {
    "classification": "",
    "multi_label": " Before multi-label files went through the data table (commit 6e5e32f, --tunesmith-only, the "
    "machine "
    "shared with two other runs, so its times are not comparable) a cold run's anonymous memory was 1,046 / 1,147 / "
    "2,006 MB at 10k / 100k / 1M rows (+960 MB), the data check's 335 / 401 / 866 MB. Micro-F1 after 20 steps says "
    "little: tunesmith picks its thresholds on the validation set; the script keeps 0.5, which few labels reach "
    "so early.",
    "token_classification": " Before tagged files went through a table and the tag probe read a sample (commit "
    "103dde5, --tunesmith-only, the machine shared with other work, so its times are not comparable) a cold run's "
    "anonymous memory was 2,142 MB at 10k and 15,743 MB at 100k sentences (the probe held every training "
    "sentence's hidden states), the data check's 433 / 1,584 MB; 1M sentences were not run (at that rate they "
    "could not fit this machine's 24 GB). F1 after 20 steps: tunesmith's tag head starts as the per-token probe; "
    "the script's random head tags nothing yet.",
    "generation": " TRL's SFTConfig turns gradient checkpointing on by default (its steps recompute activations: "
    "less memory, more time a step); tunesmith's train.gradient_checkpointing: auto leaves it off on a CPU where "
    "the batch fits, and its loop scores the validation set after the epoch (within 'train').",
}


def _dropped_outputs(row: dict) -> None:
    for value in row.values():
        if isinstance(value, dict):
            value.pop("output", None)


BASELINES = {
    "classification": "a plain Hugging Face script: datasets.load_dataset('csv') + map(batched=True) tokenization + "
    "Trainer(max_steps) with DataCollatorWithPadding, then one evaluation; MiniLM-L6, max_length 64, batch 32, "
    "no base line on either side",
    "multi_label": "a plain Hugging Face script: datasets.load_dataset('csv') + map(batched=True) tokenization into a "
    "0/1 vector per row + Trainer(max_steps, problem_type='multi_label_classification') with "
    "DataCollatorWithPadding, then one evaluation; MiniLM-L6, max_length 64, batch 32, no base line on either side",
    "token_classification": "the Hugging Face token-classification recipe (run_ner.py's steps): "
    "datasets.load_dataset('json'), the tag list from the training column, each word's first piece labelled, "
    "Trainer(max_steps) with DataCollatorForTokenClassification, then seqeval's entity F1 on the validation set; "
    "MiniLM-L6, max_length 64, batch 32, no base line on either side",
    "generation": "a plain TRL script: datasets.load_dataset('json') into prompt/completion conversations + "
    "SFTTrainer(max_steps, LoRA r 16 on every linear layer, lr 2e-4, SFTConfig's defaults otherwise: bf16 and "
    "gradient checkpointing on), then one evaluate(); "
    "SmolLM2-135M-Instruct, max_length 128, batch 8, the loss on the answers, no base line and no generated answers "
    "on either side (tunesmith: its defaults, LoRA, eval.max_samples 0)",
}


def publish(results: list[dict], args) -> None:
    from results import publish as write

    base = TASKS[args.task][3]
    rows = []
    for r in results:
        for name in ("data check", "tunesmith cold", "tunesmith warm", f"{base} cold", f"{base} warm"):
            m = r[name]
            stages = (
                f"prepare {m['prepare_s']:.1f} s, train {m['train_s']:.1f} s, evaluate {m['evaluate_s']:.1f} s"
                if "prepare_s" in m
                else "—"
            )
            split = f"{m['peak_anon_mb']:.0f} / {m['peak_file_mb']:.0f}" if "peak_anon_mb" in m else "—"
            rows.append([f"{r['rows']:,}", name, f"{m['wall_s']:.1f}", f"{m['peak_rss_mb']:.0f}", split, stages])
    sizes = " / ".join(f"{n // 1000:,}k" for n in args.sizes)
    what = {"generation": "chat", "multi_label": "multi-label", "token_classification": "tagged words"}.get(
        args.task, "classification"
    )
    write(
        "scale" if args.task == "classification" else f"scale_{args.task}",
        script="scale.py",
        command="python benchmarks/scale.py"
        + ("" if args.task == "classification" else f" --task {args.task}")
        + " --json out.json --publish",
        title=f"data at any size ({what}): {args.steps} training steps on {sizes} rows",
        baseline=BASELINES[args.task] + "; each command in its own process, peak RSS from os.wait4.",
        tables=[
            {
                "caption": "wall time and peak RSS per command (anonymous: heap; file-backed: memory-mapped tables, "
                "weights and libraries; each part's largest value, sampled every 20 ms); tunesmith's stages from its "
                "metrics.json",
                "columns": ["rows", "command", "wall s", "peak RSS MB", "peak anonymous / file-backed MB", "stages"],
                "rows": rows,
            }
        ],
        reading=_reading(results, base) + READING_NOTES[args.task],
    )


def _reading(results: list[dict], base: str) -> str:
    small, big = results[0], results[-1]
    grow = lambda side, key="peak_rss_mb": big[side][key] - small[side][key]  # noqa: E731
    ours, theirs = big["tunesmith cold"], big[f"{base} cold"]
    return (
        f"At {big['rows']:,} rows, cold: tunesmith {ours['wall_s']:.0f} s at {ours['peak_rss_mb']:.0f} MB peak, the "
        f"{base} script {theirs['wall_s']:.0f} s at {theirs['peak_rss_mb']:.0f} MB; warm: "
        f"{big['tunesmith warm']['wall_s']:.0f} s vs {big[f'{base} warm']['wall_s']:.0f} s (tunesmith runs its data "
        f"check on every row first; the script checks nothing). From {small['rows']:,} to {big['rows']:,} rows "
        f"tunesmith's peak grew {grow('tunesmith cold'):.0f} MB, of which anonymous memory "
        f"{grow('tunesmith cold', 'peak_anon_mb'):+.0f} MB and the pages of its memory-mapped data and token tables "
        f"{grow('tunesmith cold', 'peak_file_mb'):+.0f} MB; the {base} script's grew {grow(f'{base} cold'):.0f} MB "
        f"({grow(f'{base} cold', 'peak_anon_mb'):+.0f} MB anonymous)."
    )


if __name__ == "__main__":
    main()
