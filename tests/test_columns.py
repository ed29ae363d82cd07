"""Training columns read in chunks into a memory-mapped table cached by the file's bytes: the same texts and
labels a whole-file read gives, errors that name rows across chunks, the table (usable rows and the scan of all)
reused by the next read, the data check's and the method's alike."""

import json

import pandas as pd
import pytest

from tunesmith.data import columns, readers
from tunesmith.data.classification import duplicate_warnings, load_classification, read_split
from tunesmith.engine import token_table as tt
from tunesmith.engine.batching import tokenize
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import load_tokenizer, resolve_weights
from tunesmith.recipe import DataSection


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(columns, "CHUNK", 7)  # several chunks, as a large file has
    monkeypatch.setattr(columns, "BLOCK", 5)


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"text": [f"text number {i} é" for i in range(n)], "label": [["pos", "neg", "mid"][i % 3] for i in range(n)]}
    )


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_chunked_columns_hold_what_a_whole_read_holds(tmp_path, small_chunks, suffix):
    frame = rows(40)
    path = tmp_path / f"train{suffix}"
    if suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="," if suffix == ".csv" else "\t")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records")), encoding="utf-8")
    else:
        frame.to_parquet(path)
    split = read_split(str(path), "text", "label")
    assert isinstance(split.texts, columns.TextColumn) and len(split) == 40
    assert split.texts == frame.text.tolist() and split.labels == frame.label.tolist()
    assert len({id(label) for label in split.labels}) == 3  # one string per distinct label, not one per row


def test_a_column_reads_like_the_list_it_stands_for(tmp_path, small_chunks):
    frame = rows(23)
    frame.to_csv(tmp_path / "t.csv", index=False)
    texts, expected = read_split(str(tmp_path / "t.csv"), "text", None).texts, frame.text.tolist()
    assert texts[0] == expected[0] and texts[-1] == expected[-1] and texts[3:17:4] == expected[3:17:4]
    with pytest.raises(IndexError):
        texts[23]
    picked = texts.take([20, 2, 9]).take([2, 0])  # a sample of a sample: positions compose
    assert list(picked) == [expected[9], expected[20]] and picked != expected
    assert texts + ["x"] == expected + ["x"] and ["x"] + texts == ["x"] + expected
    assert not (texts == "text number 0 é") and texts != expected[:-1]


def test_errors_name_rows_across_chunks_in_a_whole_reads_order(tmp_path, small_chunks):
    frame = rows(40)
    frame.loc[[3, 15, 30], "text"] = "  "
    frame.loc[[20], "label"] = ""
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(
        TunesmithError, match=r"3 empty or non-text cell\(s\) in column 'text' at data row\(s\) 4, 16, 31 \("
    ):
        read_split(str(tmp_path / "t.csv"), "text", "label")
    frame.loc[[3, 15, 30], "text"] = "fixed"
    frame.loc[[21 + i for i in range(12)], "label"] = ""
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(TunesmithError, match=r"13 empty label cell\(s\) .* row\(s\) 21, 22, .*, 30 \.\.\."):
        read_split(str(tmp_path / "t.csv"), "text", "label")
    with pytest.raises(TunesmithError, match=r"no column 'txt' \(data.text_column\). Columns found: text, label"):
        read_split(str(tmp_path / "t.csv"), "txt", "label")


def test_json_lines_may_add_a_key_after_the_first_chunk(tmp_path, small_chunks):
    """A whole read gives a key first seen late a column with empty cells before: rows named, not 'no column'."""
    lines = [{"text": f"t{i}"} for i in range(10)] + [{"text": f"t{i}", "label": "a"} for i in range(10, 20)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in lines), encoding="utf-8")
    with pytest.raises(TunesmithError, match=r"10 empty label cell\(s\) in column 'label' at data row\(s\) 1, 2,"):
        read_split(str(tmp_path / "t.jsonl"), "text", "label")


def test_a_filter_counts_rows_after_it_across_chunks(tmp_path, small_chunks):
    frame = rows(40)
    frame.loc[[2 + 3 * i for i in range(10, 13)], "text"] = ""  # 'mid' rows 33, 36, 39 of the file (0-based 32 ..)
    frame.to_csv(tmp_path / "t.csv", index=False)
    mids = read_split(str(tmp_path / "t.csv"), "text", "label", where={"label": "pos"})
    assert mids.texts == frame.text[frame.label == "pos"].tolist()
    with pytest.raises(TunesmithError, match=r"3 empty .* at data row\(s\) 11, 12, 13 "):  # 11th-13th 'mid' rows
        read_split(str(tmp_path / "t.csv"), "text", "label", where={"label": ["mid"]})
    with pytest.raises(TunesmithError, match="no rows match data.filter"):
        read_split(str(tmp_path / "t.csv"), "text", "label", where={"label": "none"})
    with pytest.raises(TunesmithError, match="data.filter names column 'kind', which the file lacks"):
        read_split(str(tmp_path / "t.csv"), "text", "label", where={"kind": "x"})


def test_the_table_is_reused_for_the_same_bytes_and_a_failing_file_fails_again_unparsed(tmp_path, monkeypatch):
    parsed = []
    chunks = readers.iter_table
    monkeypatch.setattr(columns, "iter_table", lambda *a: parsed.append(a[0]) or chunks(*a))
    path = tmp_path / "t.csv"
    rows(30).to_csv(path, index=False)
    first = read_split(str(path), "text", "label")
    again = read_split(str(path), "text", "label")
    assert len(parsed) == 1 and again.texts.path == first.texts.path and again.texts == first.texts
    read_split(str(path), "text", None)  # other columns read: another table
    assert len(parsed) == 2
    first.texts.path.write_bytes(b"damaged")
    assert read_split(str(path), "text", "label").texts == rows(30).text.tolist() and len(parsed) == 3
    bad = rows(30)
    bad.loc[5, "label"] = ""
    bad.to_csv(path, index=False)
    for _ in range(2):  # the scan is kept with the table: the second read says the same without parsing
        with pytest.raises(TunesmithError, match=r"1 empty label cell\(s\) in column 'label' at data row\(s\) 6\."):
            read_split(str(path), "text", "label")
    assert len(parsed) == 4 and not list((columns.cache_dir() / "tables").glob("*.partial"))
    usable = columns.read_columns(str(path), "data.train", {"text": "text", "label": "label"}, strict=False)
    assert len(usable.labels) == 29 and usable.scan.bad["label"] == [1, [6]] and usable.scan.rows == 30


def test_splits_samples_and_duplicates_work_on_columns(tmp_path, small_chunks):
    frame = pd.concat([rows(60), rows(60).iloc[:5]], ignore_index=True)  # five repeated rows
    frame.to_csv(tmp_path / "train.csv", index=False)
    rows(60).iloc[10:14].to_csv(tmp_path / "test.csv", index=False)
    data = load_classification(
        DataSection(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), max_train_samples=40), 0
    )
    assert isinstance(data.train.texts, columns.TextColumn) and len(data.train) == 40
    pairs = set(zip(frame.text, frame.label))
    assert all((t, y) in pairs for t, y in zip(data.train.texts, data.train.labels))  # texts and labels stay paired
    assert set(data.validation.texts.rows).isdisjoint(data.train.texts.rows)  # the validation rows are held out
    whole = read_split(str(tmp_path / "train.csv"), "text", "label")
    test = read_split(str(tmp_path / "test.csv"), "text", "label")
    warnings = duplicate_warnings(whole, [test])
    assert "5 duplicate row(s)" in warnings[0] and "4 text(s) also appear in the training data" in warnings[1]


def test_tokens_of_a_column_are_the_tokens_of_its_list(tmp_path, small_chunks):
    tokenizer = load_tokenizer(resolve_weights("tiny-bert"))
    frame = rows(25).assign(pair=[f"pair {i}" for i in range(25)])
    frame.to_csv(tmp_path / "t.csv", index=False)
    split = read_split(str(tmp_path / "t.csv"), "text", "label", "pair")
    sample = [24, 3, 3, 10]
    from_column, _ = tt.token_table(tokenizer, split.texts.take(sample), split.pairs.take(sample), 16)
    expected, _ = tokenize(tokenizer, [frame.text[i] for i in sample], [frame.pair[i] for i in sample], 16)
    assert list(from_column) == expected
    again, _ = tt.token_table(tokenizer, split.texts.take(sample), split.pairs.take(sample), 16)
    other, _ = tt.token_table(tokenizer, split.texts.take(sample[:3]), split.pairs.take(sample[:3]), 16)
    assert again.path == from_column.path and other.path != from_column.path  # keyed by the table and the rows


@pytest.mark.parametrize("scan", ["not json", "[]", '{"seen": "text", "rows": 1, "kept": 1, "bad": {}}', "{}"])
def test_a_damaged_scan_beside_a_table_rebuilds_it(tmp_path, scan):
    path = tmp_path / "t.csv"
    rows(12).to_csv(path, index=False)
    first = read_split(str(path), "text", "label")
    first.texts.path.with_suffix(".scan.json").write_text(scan, encoding="utf-8")
    again = read_split(str(path), "text", "label")
    assert again.texts == rows(12).text.tolist() and again.labels == rows(12).label.tolist()
    assert json.loads(again.texts.path.with_suffix(".scan.json").read_text())["rows"] == 12


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_label_sets_are_read_in_chunks_one_list_per_distinct_set(tmp_path, small_chunks, suffix):
    from types import SimpleNamespace

    from tunesmith.data.multilabel import read_multilabel

    sets = [["a", "b"], [], ["b"], ["a", "b"], ["c"]]
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(30)], "labels": [sets[i % 5] for i in range(30)]})
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":  # labels joined in a string, as many exports write them
        frame.assign(labels=frame["labels"].map("|".join)).to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    spec = SimpleNamespace(
        text_column="text", text_pair_column=None, label_column="labels", label_separator="|", filter=None
    )
    split = read_multilabel(str(path), spec, "data.train")
    assert isinstance(split.texts, columns.TextColumn) and split.texts == frame.text.tolist()
    assert split.labels == frame["labels"].tolist()
    assert len({id(row) for row in split.labels}) == 4  # [a, b] twice in the cycle: one list
    if suffix == ".csv":  # the separator names the table: another one reads other sets, not the cached ones
        other = read_multilabel(str(path), SimpleNamespace(**{**vars(spec), "label_separator": ";"}), "data.train")
        assert other.labels[0] == ["a|b"] and split.labels[0] == ["a", "b"]
    bad = frame.copy()
    bad.loc[[2, 17], "text"] = " "
    bad.to_json(tmp_path / "bad.jsonl", orient="records", lines=True)
    with pytest.raises(TunesmithError, match=r"2 empty or non-text cell\(s\) in column 'text' at data row\(s\) 3, 18"):
        read_multilabel(str(tmp_path / "bad.jsonl"), spec, "data.train")
    with pytest.raises(TunesmithError, match=r"no column 'tags' \(data.label_column\)"):
        read_multilabel(str(path), SimpleNamespace(**{**vars(spec), "label_column": "tags"}), "data.train")


@pytest.mark.parametrize("cell", ["not json", '{"a": 1}', "[1, 2]"])
def test_a_cached_table_whose_label_sets_are_damaged_is_rebuilt(tmp_path, cell):
    from types import SimpleNamespace

    import pyarrow as pa

    from tunesmith.data.multilabel import read_multilabel

    path = tmp_path / "t.csv"
    pd.DataFrame({"text": ["a b", "c d", "e f"], "labels": ["x|y", "y", ""]}).to_csv(path, index=False)
    spec = SimpleNamespace(
        text_column="text", text_pair_column=None, label_column="labels", label_separator="|", filter=None
    )
    first = read_multilabel(str(path), spec, "data.train")
    table = pa.ipc.open_stream(pa.memory_map(str(first.texts.path))).read_all()
    damaged = table.set_column(1, "labels", pa.array([cell] * 3, pa.string()))
    with pa.OSFile(str(first.texts.path), "wb") as sink, pa.ipc.new_stream(sink, damaged.schema) as writer:
        writer.write_table(damaged)
    again = read_multilabel(str(path), spec, "data.train")
    assert again.labels == [["x", "y"], ["y"], []] and again.texts == ["a b", "c d", "e f"]
