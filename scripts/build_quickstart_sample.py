"""Build the quickstart's shipped sample from GoEmotions (Apache-2.0) in the shared benchmark data.

Maintainers only: users get the result in `src/tunesmith/samples/comment_sentiment/` and never run this.
Comments are grouped into positive / negative with the sentiment grouping of the GoEmotions paper
(Demszky et al. 2020, table 7); a comment is kept only when every one of its emotions falls in one group,
so no row carries mixed or ambiguous feelings. Test rows whose text is in the training rows are dropped,
so the test score is on unseen texts. Seeded, so a rebuild gives the same files.

    python scripts/build_quickstart_sample.py [--source ../shared/data/goemotions_multilabel]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

POSITIVE = set(
    "admiration amusement approval caring desire excitement gratitude joy love optimism pride relief".split()
)
NEGATIVE = set(
    "anger annoyance disappointment disapproval disgust embarrassment fear grief nervousness remorse sadness".split()
)
PER_CLASS = {"train": 500, "test": 200}
TARGET = Path(__file__).resolve().parents[1] / "src/tunesmith/samples/comment_sentiment"


def sentiment(labels: str) -> str | None:
    emotions = set(labels.split("|"))
    if emotions <= POSITIVE:
        return "positive"
    if emotions <= NEGATIVE:
        return "negative"
    return None


def rows_of(path: Path, exclude: set[str]) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = {"positive": [], "negative": []}
    seen = set(exclude)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text, label = row["text"].strip(), sentiment(row["labels"])
            if label and text and text not in seen:
                seen.add(text)
                by_class[label].append(text)
    return by_class


def sample(by_class: dict[str, list[str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    rows = [(text, label) for label, texts in by_class.items() for text in rng.sample(texts, n)]
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/goemotions_multilabel"
    )
    args = parser.parse_args()
    rng = random.Random(42)
    TARGET.mkdir(parents=True, exist_ok=True)
    train = sample(rows_of(args.source / "train.csv", set()), PER_CLASS["train"], rng)
    test = sample(rows_of(args.source / "test.csv", {text for text, _ in train}), PER_CLASS["test"], rng)
    for name, rows in (("train", train), ("test", test)):
        with (TARGET / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        print(f"{TARGET / name}.csv: {len(rows)} rows")


if __name__ == "__main__":
    main()
