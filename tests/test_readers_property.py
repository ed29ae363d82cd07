"""Property-based: whatever bytes or table shapes users feed the readers, only TunesmithError comes out."""

import csv
import io
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data.classification import read_split
from tunesmith.data.conversations import read_conversations
from tunesmith.data.corpus import read_corpus
from tunesmith.data.readers import read_table
from tunesmith.errors import TunesmithError
from tunesmith.recipe import DataSection

SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("HYPOTHESIS_EXAMPLES", 60)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _only_our_error(fn, *args) -> None:
    try:
        fn(*args)
    except TunesmithError as err:
        assert str(err)  # a message, never an empty one


def _file(content: bytes, suffix: str) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    handle.write(content)
    handle.close()
    return Path(handle.name)


@SETTINGS
@given(content=st.binary(max_size=400), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(content, suffix):
    path = _file(content, suffix)
    _only_our_error(read_table, path)
    _only_our_error(read_split, str(path), "text", "label")
    _only_our_error(read_corpus, [str(path)], "text", "method.corpus")


@SETTINGS
@given(
    rows=st.lists(st.lists(st.text(max_size=12), min_size=0, max_size=4), max_size=6),
    header=st.lists(st.sampled_from(["text", "label", "", "text ", "x", "text"]), min_size=0, max_size=4),
    sep=st.sampled_from([",", "\t"]),
)
def test_random_delimited_shapes(rows, header, sep):
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    path = _file(buffer.getvalue().encode("utf-8"), ".csv" if sep == "," else ".tsv")
    _only_our_error(read_split, str(path), "text", "label")
    _only_our_error(read_conversations, str(path), DataSection(train=str(path)), "data.train")


@SETTINGS
@given(lines=st.lists(json_values, max_size=6))
def test_random_jsonl_shapes(lines):
    path = _file("\n".join(json.dumps(v) for v in lines).encode("utf-8"), ".jsonl")
    _only_our_error(read_split, str(path), "text", "label")
    _only_our_error(read_conversations, str(path), DataSection(train=str(path)), "data.train")
    whole = _file(json.dumps(lines).encode("utf-8"), ".json")
    _only_our_error(read_split, str(whole), "text", "label")


@SETTINGS
@given(records=st.lists(st.fixed_dictionaries({"text": json_values, "label": json_values}), min_size=1, max_size=6))
def test_right_columns_wrong_cell_types(records):
    path = _file("\n".join(json.dumps(r) for r in records).encode("utf-8"), ".jsonl")
    _only_our_error(read_split, str(path), "text", "label")
    chat = _file("\n".join(json.dumps({"messages": r["text"]}) for r in records).encode("utf-8"), ".jsonl")
    _only_our_error(read_conversations, str(chat), DataSection(train=str(chat)), "data.train")


def test_a_well_formed_file_still_reads(tmp_path):
    """The properties above must not pass by refusing everything."""
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_csv(tmp_path / "ok.csv", index=False)
    split = read_split(str(tmp_path / "ok.csv"), "text", "label")
    assert split.texts == ["a", "b"] and split.labels == ["x", "y"]
    with pytest.raises(TunesmithError):
        read_split(str(tmp_path / "ok.csv"), "body", "label")
