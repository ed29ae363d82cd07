"""Build an offline mirror of the Hub datasets the shipped recipes name, from this repository's benchmark data.

    python scripts/hub_mirror.py OUT [--source ../shared/data] [--as files]

The shipped recipes that name a public Hub dataset (`data.hub`) read it through `datasets` where the Hub is
reachable. Tests and benchmarks here run offline, so this writes what `tunesmith data mirror ID -o OUT` would
have saved, from the same rows kept in ../shared/data, in each dataset's Hub layout: its column names, its
class labels as `datasets.ClassLabel` numbers (hidden test labels as -1, as GLUE publishes them) and its score
scale. `--as files` writes plain Parquet split files instead of `datasets`' saved copy (the other mirror form, as a
team writes its own files: class names, not numbers, and no split whose labels are hidden).
Then: `TUNESMITH_DATA_ROOT=OUT:../shared/data` (or `--data-root OUT --data-root ../shared/data`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GO_EMOTIONS = (
    "admiration amusement anger annoyance approval caring confusion curiosity desire disappointment disapproval "
    "disgust embarrassment excitement fear gratitude grief joy love nervousness optimism pride realization relief "
    "remorse sadness surprise neutral"
).split()  # the Hub dataset's ClassLabel order (labels.txt of the GoEmotions release)
SPLITS = ("train", "validation", "test")


def go_emotions(source: Path):
    """google-research-datasets/go_emotions, config simplified: text, labels (lists of class numbers)."""
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "labels": datasets.List(datasets.ClassLabel(names=GO_EMOTIONS))}
    )
    frames = {s: pd.read_csv(source / "goemotions_multilabel" / f"{s}.csv", keep_default_na=False) for s in SPLITS}
    columns = {s: {"text": f.text.tolist(), "labels": [x.split("|") for x in f.labels]} for s, f in frames.items()}
    return {
        s: datasets.Dataset.from_dict(_numbered(c, "labels", GO_EMOTIONS), features=features)
        for s, c in columns.items()
    }


def stsb(source: Path):
    """sentence-transformers/stsb: sentence1, sentence2, score (the 0-5 rating divided by 5)."""
    import datasets

    def split(name):
        frame = pd.read_csv(source / "stsb_regression" / f"{name}.csv")
        return {"sentence1": frame.text, "sentence2": frame.text_pair, "score": frame.label / 5.0}

    return {s: datasets.Dataset.from_pandas(pd.DataFrame(split(s)), preserve_index=False) for s in SPLITS}


def sst2(source: Path):
    """stanfordnlp/sst2: idx, sentence, label (ClassLabel negative/positive); the test split's labels hidden (-1)."""
    import datasets

    names = ["negative", "positive"]
    features = datasets.Features(
        {
            "idx": datasets.Value("int32"),
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=names),
        }
    )
    parts = {}
    for name in SPLITS:
        frame = pd.read_csv(source / "sst2" / f"{name}.csv")
        labels = [-1] * len(frame) if name == "test" else [names.index(x) for x in frame.label]
        columns = {"idx": list(range(len(frame))), "sentence": frame.text.tolist(), "label": labels}
        parts[name] = datasets.Dataset.from_dict(columns, features=features)
    return parts


def _numbered(columns: dict, key: str, names: list[str]) -> dict:
    return {**columns, key: [[names.index(x) for x in row] for row in columns[key]]}


MIRRORS = {  # Hub id (and config) -> how its rows are rebuilt from ../shared/data
    ("google-research-datasets/go_emotions", "simplified"): go_emotions,
    ("sentence-transformers/stsb", None): stsb,
    ("stanfordnlp/sst2", None): sst2,
}


def build(out: Path, source: Path = SHARED, as_files: bool = False) -> Path:
    import datasets

    from tunesmith.data.hub import _labels_hidden, _write_named

    for (hub, config), rows in MIRRORS.items():
        folder = out.joinpath(*hub.split("/"), *([config] if config else []))
        if folder.exists():
            continue
        parts = rows(source)
        if as_files:
            folder.mkdir(parents=True)
            for name, part in parts.items():
                path = folder / f"{name}.parquet"
                _write_named(part, path)
                if _labels_hidden(path, part):
                    path.unlink()
        else:
            datasets.DatasetDict(parts).save_to_disk(str(folder))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, default=SHARED)
    parser.add_argument("--as", dest="form", choices=["saved", "files"], default="saved")
    args = parser.parse_args()
    print(build(args.out, args.source, args.form == "files"))


if __name__ == "__main__":
    main()
