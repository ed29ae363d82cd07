"""Data that is not a file yet: a Hugging Face Hub dataset (`data.hub`) or a table given in Python
(`tunesmith.run(recipe, train=frame)`), turned into files the readers take as they take a user's own.

Why files: every check and every error message of the readers (the bad-input corpus) then holds for these
sources too, and a run directory's saved recipe names files that `--resume`, `update` and `eval` read again.

- Hub datasets go through `datasets.load_dataset` (its cache; datasets 4+ runs no loading scripts, so a
  dataset id can never run code here) and each split is written once as Parquet under the tunesmith cache,
  keyed by id, config, revision and the dataset's own fingerprint.
- Offline, TUNESMITH_DATA_ROOT names a mirror (or several, joined like PATH): ROOT/org/name/ (ROOT/org/name/
  CONFIG/ first when data.config is set), ROOT/name/ or ROOT/org__name/ holding train.csv, validation.jsonl,
  test.parquet, ... (any supported extension), read in place; or a copy saved by `datasets` (`tunesmith data
  mirror ID -o ROOT`, i.e. `load_dataset(id).save_to_disk(...)`, on a machine with internet), whose splits are
  written once as Parquet like a download's.
- Class labels stored as numbers (`datasets.ClassLabel`, also in lists) are written as their names, so a run's
  labels read "positive", not 1; -1, a label the dataset hides (GLUE's test sets), is missing, and a validation
  or test split whose labels are all hidden is left out with a warning (validation is then carved from train).
- In-memory tables (pandas DataFrames, `datasets.Dataset`, lists of dicts) are written as Parquet named by the
  hash of their bytes: the same table is the same file, so a second run or a resume reads it again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
from pathlib import Path

from ..errors import TunesmithError
from ..paths import DATA_ROOT_ENV, cache_dir, data_roots
from .readers import SUFFIXES

ROLES = ("train", "validation", "test")
DEFAULT_SPLITS = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}
MIRROR_ENV = DATA_ROOT_ENV
BATCH = 10_000  # rows written to Parquet at once: a million-row split never sits in memory whole
log = logging.getLogger(__name__)


def materialize(recipe):
    """The recipe with every `data.hub` section replaced by the files of its splits (a copy; the rest untouched)."""
    holders = lambda r: [r, *(r.stages or []), *(r.experiences or [])]  # noqa: E731  (what holds a data section)
    if not any(h.data is not None and h.data.hub for h in holders(recipe)):
        return recipe
    recipe = recipe.model_copy(deep=True)
    for holder in holders(recipe):
        if holder.data is not None and holder.data.hub:
            holder.data = with_files(holder.data, hub_files(holder.data))
    return recipe


def with_files(section, files: dict):
    """The section reading `files` (role -> path) instead of its hub id; `data.source` says where they came from."""
    origin = f"hub:{section.hub}" + (f" ({section.config})" if section.config else "")
    fields = {**section.model_dump(), "hub": None, "config": None, "revision": None, "split_map": None}
    return type(section).model_validate({**fields, **{r: files.get(r) for r in ROLES}, "source": origin})


def hub_files(section) -> dict[str, str]:
    """role -> file for a hub section: from the mirror when TUNESMITH_DATA_ROOT is set, else from the Hub."""
    wanted = _split_names(section)
    roots = data_roots()
    if roots:
        return _mirrored(roots, section, wanted)
    return _downloaded(section, wanted)


def _split_names(section) -> dict[str, tuple[str, ...]]:
    given = section.split_map or {}
    return {role: (given[role],) if role in given else DEFAULT_SPLITS[role] for role in ROLES}


def mirror_folder(root: Path, hub: str, config: str | None = None) -> Path:
    """Where a mirror keeps one Hub dataset (one configuration of it): ROOT/org/name[/CONFIG]."""
    parts = [hub, *([config] if config else [])]
    if any(p in ("", ".", "..") or "\\" in p for part in parts for p in part.split("/")):
        raise TunesmithError(f"data.hub: {hub!r} ({config!r}) cannot name a folder.")  # the schema refuses most
    return root.joinpath(*hub.split("/"), *([config] if config else []))


def _mirrored(roots: list[Path], section, wanted: dict) -> dict[str, str]:
    hub = section.hub
    candidates = [
        folder
        for root in roots
        for folder in (
            *([mirror_folder(root, hub, section.config)] if section.config else []),
            mirror_folder(root, hub),
            root / hub.split("/")[-1],
            root / hub.replace("/", "__"),
        )
    ]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        raise TunesmithError(
            f"data.hub: {hub} is not in the mirror {os.pathsep.join(map(str, roots))} ({MIRROR_ENV}): looked for "
            f"{', '.join(str(c) for c in candidates)}. Put its split files (train.csv, test.csv, ...) in one of "
            "them (`tunesmith data mirror` saves a Hub dataset there), or unset the variable to download it."
        )
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return _saved_copy(folder, section, wanted)
    files = {}
    for role, names in wanted.items():
        found = [folder / f"{n}{ext}" for n in names for ext in SUFFIXES if (folder / f"{n}{ext}").is_file()]
        if found:
            files[role] = str(found[0])
    if "train" not in files:
        present = sorted(p.name for p in folder.iterdir())[:20]
        raise TunesmithError(
            f"data.hub: {folder} (the mirror of {hub}) has no training split file "
            f"({' or '.join(wanted['train'])} with one of {', '.join(sorted(set(SUFFIXES)))}); it holds: "
            f"{', '.join(present) or 'nothing'}."
        )
    return files


def _downloaded(section, wanted: dict) -> dict[str, str]:
    return _as_parquet(_load(section), section, wanted)


def _load(section):
    import datasets

    try:
        return datasets.load_dataset(section.hub, section.config, revision=section.revision)
    except Exception as err:  # noqa: BLE001  (offline, unknown id, gated dataset, wrong config: all said the same way)
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise TunesmithError(
            f"data.hub: {section.hub} could not be loaded ({reason}). Check the id and data.config; offline, "
            f"load it once where the Hub is reachable (the cache in ~/.cache/huggingface is reused), or set "
            f"{MIRROR_ENV} (--data-root) to a mirror made by `tunesmith data mirror` where the Hub is reachable, "
            f"or to a folder holding {section.hub}/train.csv and its other splits."
        ) from None


def save_mirror(hub: str, root: Path, config: str | None = None, revision: str | None = None) -> Path:
    """Download a Hub dataset and save it under ROOT as an offline mirror (`datasets`' save_to_disk, read back by
    `data.hub` with TUNESMITH_DATA_ROOT=ROOT): how a team carries Hub data to machines without internet."""
    from pydantic import ValidationError

    from ..recipe import DataSection, format_validation_error

    try:  # the id's checks, as a recipe's data.hub gets them
        section = DataSection.model_validate({"hub": hub, "config": config, "revision": revision})
    except ValidationError as err:
        raise TunesmithError(format_validation_error(err, "data.hub")) from None
    folder = mirror_folder(root, section.hub, section.config)
    if folder.exists():  # never replaces what it did not write
        raise TunesmithError(f"{folder} already exists: remove it first to save {hub} again, or choose another -o.")
    loaded = _load(section)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    try:
        loaded.save_to_disk(str(partial))
        partial.replace(folder)  # whole or absent: an interrupted save never looks like a mirror
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # what a failed save left (gone already after the rename)
    return folder


def _saved_copy(folder: Path, section, wanted: dict) -> dict[str, str]:
    """A mirror folder written by `datasets`' save_to_disk (Arrow files and JSON; nothing in it is executed)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as err:  # noqa: BLE001  (a damaged or partial copy: missing files, bad JSON, bad Arrow)
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise TunesmithError(
            f"data.hub: {folder} (the mirror of {section.hub}) looks like a copy saved by datasets but does not load "
            f"({reason}). Save it again with load_dataset(...).save_to_disk(...), or put its splits there as files."
        ) from None
    if isinstance(loaded, datasets.Dataset):  # one saved Dataset: the training split
        loaded = datasets.DatasetDict({wanted["train"][0]: loaded})
    return _as_parquet(loaded, section, wanted)


def _as_parquet(loaded, section, wanted: dict) -> dict[str, str]:
    """role -> Parquet file of each wanted split of a DatasetDict, written once under the cache."""
    files = {}
    folder = cache_dir() / "hub" / _key(section.hub, section.config, section.revision)
    for role, names in wanted.items():
        split = next((n for n in names if n in loaded), None)
        if split is None:
            if role == "train" or section.split_map and role in section.split_map:
                raise TunesmithError(
                    f"data.hub: {section.hub} has no split {' or '.join(names)} (it has: {', '.join(loaded)}); "
                    "name the split in data.split_map."
                )
            continue
        part = loaded[split]
        # split names (split_map) and fingerprints (a saved copy's state.json) are others' text: hashed, never
        # joined into a path as they are
        path = folder / f"{_key(split, part._fingerprint, 'names')}.parquet"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # processes of one run may race
            _write_named(part, partial)
            partial.replace(path)  # whole or absent: a killed download never looks like a split
        if role != "train" and _labels_hidden(path, part):
            log.warning(
                f"data.hub: {section.hub}'s {split} split hides its labels (all -1): it is not used as the "
                f"{role} set; name a labelled split in data.split_map to use one."
            )
            continue
        files[role] = str(path)
    return files


def _class_labels(features) -> dict[str, tuple[list[str], bool]]:
    """column -> (class names, whether the column holds lists) for the columns datasets stores as class numbers."""
    import datasets

    found = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, datasets.ClassLabel):
            found[column] = (list(feature.names), False)
        elif isinstance(inner, datasets.ClassLabel):
            found[column] = (list(inner.names), True)
    return found


def _write_named(part, path: Path) -> None:
    """The split as Parquet, batch by batch, its class numbers written as class names (-1 as missing)."""
    import pyarrow.parquet as pq

    labels = _class_labels(part.features)
    writer = None
    try:
        for batch in part.with_format("arrow").iter(batch_size=BATCH):
            batch = _named(batch, labels)
            writer = writer or pq.ParquetWriter(str(path), batch.schema)
            writer.write_table(batch)
        if writer is None:  # an empty split: an empty file with its columns
            pq.write_table(_named(part.with_format("arrow")[:0], labels), str(path))
    finally:
        if writer is not None:
            writer.close()


def _named(table, labels: dict):
    import pyarrow as pa
    import pyarrow.compute as pc

    for column, (names, many) in labels.items():
        index = table.schema.get_field_index(column)
        values = table.column(index).combine_chunks()
        ids = values.values if many else values
        ids = pc.if_else(pc.less(ids, 0), pa.scalar(None, ids.type), ids)
        if len(ids) and (pc.max(ids).as_py() or 0) >= len(names):
            raise TunesmithError(f"data.hub: column {column!r} has a class number past its {len(names)} names.")
        named = pc.take(pa.array(names, pa.string()), ids)
        if many:
            named = pa.ListArray.from_arrays(values.offsets, named, mask=values.is_null())
        table = table.set_column(index, pa.field(column, named.type), named)
    return table


def _labels_hidden(path: Path, part) -> bool:
    """Every class column of the split is missing throughout (GLUE-style test sets publish -1 for every label)."""
    import pyarrow.parquet as pq

    columns = [c for c, (_, many) in _class_labels(part.features).items() if not many]
    if not columns or not len(part):
        return False
    table = pq.read_table(str(path), columns=columns)
    return all(table.column(c).null_count == len(table) for c in columns)


def _key(*parts) -> str:
    text = "\x00".join(str(p) for p in parts)
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(parts[0]))[:60]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def table_file(table, role: str) -> str:
    """An in-memory table (pandas DataFrame, datasets.Dataset or list of dicts) as a Parquet file named by its
    content's hash under the tunesmith cache."""
    import pandas as pd

    if hasattr(table, "to_pandas") and not isinstance(table, pd.DataFrame):
        table = table.to_pandas()
    elif isinstance(table, list):
        table = pd.DataFrame(table)
    if not isinstance(table, pd.DataFrame):
        raise TunesmithError(
            f"{role}: give a pandas DataFrame, a datasets.Dataset or a list of dicts, not {type(table).__name__}."
        )
    if table.empty:
        raise TunesmithError(f"{role}: the table has no rows.")
    buffer = io.BytesIO()
    try:
        table.to_parquet(buffer, index=False)
    except (ValueError, TypeError, ImportError) as err:  # mixed types in a column, objects Parquet cannot hold
        raise TunesmithError(f"{role}: the table cannot be saved as Parquet ({err}); give plain columns.") from None
    data = buffer.getvalue()
    path = cache_dir() / "tables" / f"{hashlib.sha256(data).hexdigest()[:24]}.parquet"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(path)
    return str(path)
