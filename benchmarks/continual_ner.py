"""New entity types arriving over time (class-incremental NER), MiniLM on financial_ner_finer_ord.

The training sentences are cut into three seeded, disjoint parts; part k is annotated for one entity type only
(PER, then ORG, then LOC; the other types' words tagged O, as data labelled for one type is). Each experience is
scored on the test file annotated for its type. Strategies side by side: `naive` (plain sequential fine-tuning),
`replay` (tunesmith's default: replay + pseudo-labels for old types), and `joint` (one supervised run on all the
training sentences with every type: the upper bound). Final figure: entity F1 on the fully annotated test file.

    python benchmarks/continual_ner.py [--epochs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAME, ORDER = "financial_ner_finer_ord", ["PER", "ORG", "LOC"]


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def only(rows: list[dict], kind: str) -> list[dict]:
    return [
        {"tokens": r["tokens"], "tags": [t if t != "O" and t[2:] == kind else "O" for t in r["tags"]]} for r in rows
    ]


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def main() -> None:
    import tunesmith

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    train, validation, test = (read(SHARED / NAME / f"{s}.jsonl") for s in ("train", "validation", "test"))
    random.Random(args.seed).shuffle(train)
    train_cfg = {"epochs": args.epochs, "seed": args.seed, "max_length": 128}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full_test = write(tmp / "test.jsonl", test)
        exps = []
        for k, kind in enumerate(ORDER):
            part = train[k :: len(ORDER)]
            exps.append(
                {
                    "name": kind,
                    "data": {
                        "train": write(tmp / f"{kind}-train.jsonl", only(part, kind)),
                        "validation": write(tmp / f"{kind}-val.jsonl", only(validation, kind)),
                        "test": write(tmp / f"{kind}-test.jsonl", only(test, kind)),
                    },
                }
            )
        for strategy in ("naive", "replay"):
            recipe = {
                "task": "token_classification",
                "model": "minilm-l6",
                "train": train_cfg,
                "eval": {"baseline": "none"},
                "method": {"name": "continual", "strategy": strategy},
                "experiences": exps,
            }
            result = tunesmith.run(recipe, output_dir=tmp / strategy)
            c = result.metrics["continual"]
            final = tunesmith.Predictor.load(result.run_dir).evaluate(full_test)
            results[strategy] = {
                "matrix": c["matrix"],
                "average_f1": c["average_accuracy"],
                "bwt": c["bwt"],
                "final_f1_all_types": final["f1"],
                "train_s": result.metrics["train"]["runtime_s"],
            }
            print(strategy, json.dumps(results[strategy]), flush=True)
        joint = tunesmith.run(
            {
                "task": "token_classification",
                "model": "minilm-l6",
                "train": train_cfg,
                "eval": {"baseline": "none"},
                "data": {
                    "train": write(tmp / "all.jsonl", train),
                    "validation": write(tmp / "val.jsonl", validation),
                    "test": full_test,
                },
            },
            output_dir=tmp / "joint",
        )
        results["joint"] = {
            "final_f1_all_types": joint.metrics["tuned"]["f1"],
            "train_s": joint.metrics["train"]["runtime_s"],
        }
        print("joint", json.dumps(results["joint"]), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
