"""Token-classification files read in chunks into a memory-mapped table of words and IOB2 tags cached by the
file's bytes: what a whole read gives, errors that name rows across chunks, a tag scheme read the same across
chunks, the table reused by the next read, splits that are views of it, and the token table read from it."""

import json

import pytest

from tunesmith.data import token_files
from tunesmith.data.bad_rows import leaving_out
from tunesmith.data.columns import TextColumn
from tunesmith.data.token_files import Joined, Windows, load_tokens, read_tagged
from tunesmith.errors import TunesmithError
from tunesmith.recipe import DataSection


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(token_files, "CHUNK", 4)  # several chunks, as a large file has


def sentences(n: int, prefix: str = "B-") -> list[dict]:
    return [
        {"tokens": [f"w{i}", "met", "Ann", "Lee"], "tags": ["O", "O", f"{prefix}PER", "I-PER"], "src": i % 2}
        for i in range(n)
    ]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_a_chunked_read_gives_the_words_and_tags_as_columns_of_a_table(tmp_path, small_chunks):
    rows = sentences(11)
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    split = read_tagged(path, DataSection(train=path), "data.train")
    assert isinstance(split.tokens, TextColumn) and isinstance(split.tags, TextColumn) and len(split) == 11
    assert split.tokens == [r["tokens"] for r in rows] and split.tags == [r["tags"] for r in rows]
    assert split.tokens[-1] == ["w10", "met", "Ann", "Lee"] and split.iob1_rows == 0


def test_a_bad_row_is_named_by_its_place_in_the_file_and_leaves_no_table(tmp_path, small_chunks, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    rows = sentences(11)
    rows[6]["tags"] = ["O"]  # fewer tags than words, in the second chunk
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(TunesmithError, match=r"rows \[7\] have a different number"):
        read_tagged(path, DataSection(train=path), "data.train")
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]  # no table, no partial file
    rows[6]["tags"], rows[9]["tokens"] = ["O"] * 4, []
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(TunesmithError, match=r"data row 10: 'tokens' must be a non-empty list"):
        read_tagged(path, DataSection(train=path), "data.train")
    with leaving_out():
        split = read_tagged(path, DataSection(train=path), "data.train")
    assert len(split) == 10 and ["w9", "met", "Ann", "Lee"] not in list(split.tokens)


def test_the_second_read_opens_the_table_and_says_again_what_was_left_out(tmp_path, small_chunks, monkeypatch, caplog):
    rows = sentences(9)
    rows[2]["tokens"] = "not a list"
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with leaving_out():
        first = read_tagged(path, DataSection(train=path), "data.train")
    monkeypatch.setattr(token_files, "iter_table", lambda *a, **k: pytest.fail("parsed again"))
    caplog.clear()
    with leaving_out():
        again = read_tagged(path, DataSection(train=path), "data.train")
    assert again.tokens == first.tokens and len(again) == 8
    assert "left out (train.data_check: warn)" in caplog.text and "data row 3" in caplog.text


def test_tag_schemes_are_read_per_file_across_chunks(tmp_path, small_chunks):
    io = [{"tokens": ["Ann", "Lee", "ran"], "tags": ["person", "person", "O"]}] * 5 + [
        {"tokens": ["x"], "tags": ["O"]}
    ] * 4
    path = write_jsonl(tmp_path / "io.jsonl", io)
    split = read_tagged(path, DataSection(train=path), "data.train")
    assert split.tags[4] == ["B-person", "I-person", "O"] and split.io_rows == 5 and "tagged IO" in split.warnings[0]
    for mixed in (sentences(5) + io[:5], io[:5] + sentences(5)):  # IO in one chunk, prefixed tags in another
        path = write_jsonl(tmp_path / "mixed.jsonl", mixed)
        with pytest.raises(TunesmithError, match=r"tag\(s\) \['person'\] are not IOB2"):
            read_tagged(path, DataSection(train=path), "data.train")
    iob1 = sentences(9, prefix="I-")  # IOB1: an entity may open with I-
    path = write_jsonl(tmp_path / "iob1.jsonl", iob1)
    split = read_tagged(path, DataSection(train=path), "data.train")
    assert split.iob1_rows == 9 and split.tags[8] == ["O", "O", "B-PER", "I-PER"]


def test_the_filter_keeps_rows_across_chunks_and_errors_count_rows_after_it(tmp_path, small_chunks):
    rows = sentences(12)
    rows[9]["tags"] = ["O"]  # the 5th row with src 1
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(TunesmithError, match=r"rows \[5\]"):
        read_tagged(path, DataSection(train=path, filter={"src": "1"}), "data.train")
    rows[9]["tags"] = rows[9]["tags"] * 4
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    split = read_tagged(path, DataSection(train=path, filter={"src": "0"}), "data.train")
    assert [words[0] for words in split.tokens] == [f"w{i}" for i in range(0, 12, 2)]
    with pytest.raises(TunesmithError, match="no rows match data.filter"):
        read_tagged(path, DataSection(train=path, filter={"src": "7"}), "data.train")
    with pytest.raises(TunesmithError, match="names column 'source', which the file lacks"):
        read_tagged(path, DataSection(train=path, filter={"source": "0"}), "data.train")


def test_splits_are_views_of_the_table_and_train_from_it_without_lists(tmp_path, small_chunks, monkeypatch):
    import datasets

    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.tasks.token_classification import encode, encode_table

    rows = sentences(20)
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    data = load_tokens(DataSection(train=path, validation_split=0.25, max_train_samples=10), seed=3)
    assert isinstance(data.train.tokens, TextColumn) and isinstance(data.validation.tags, TextColumn)
    assert len(data.train) == 10 and len(data.validation) == 5 and data.labels == ["O", "B-PER", "I-PER"]
    held = {w[0] for w in data.validation.tokens}
    assert not held & {w[0] for w in data.train.tokens}
    tokenizer = load_tokenizer(resolve_weights("tiny-bert"))
    monkeypatch.setattr(datasets.Dataset, "from_dict", lambda *a, **k: pytest.fail("rows read into lists"))
    table_rows, firsts, cut = encode_table(tokenizer, data.train.tokens, data.train.tags, data.labels, 32)
    want, want_firsts, _ = encode(tokenizer, list(data.train.tokens), list(data.train.tags), data.labels, 32)
    assert list(table_rows) == [{**r, "attention_mask": r["attention_mask"]} for r in want]
    assert list(firsts) == want_firsts and cut == 0


def test_long_sentences_train_as_windows_after_the_rows_that_fit(tmp_path):
    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.tasks.token_classification import encode, encode_table, split_long, train_windows

    rows = sentences(3)
    rows[1] = {"tokens": [f"word{i}" for i in range(40)], "tags": ["B-PER"] + ["O"] * 39}
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    split = read_tagged(path, DataSection(train=path), "data.train")
    tokenizer = load_tokenizer(resolve_weights("tiny-bert"))
    labels = ["O", "B-PER", "I-PER"]
    _, firsts, cut = encode_table(tokenizer, split.tokens, split.tags, labels, 16)
    windowed, long, _ = split_long(tokenizer, split, firsts, 16)
    assert cut == long == 1 and isinstance(windowed.tokens, Joined)
    assert list(windowed.tokens)[:2] == [rows[0]["tokens"], rows[2]["tokens"]] and len(windowed) > 3
    assert sum((w for w in list(windowed.tokens)[2:]), []).count("word0") == 1  # the windows cover the long row
    assert isinstance(windowed.tokens.parts[1], Windows)  # read from the table when asked for, not copied
    assert [len(w) for w in windowed.tags] == [len(w) for w in windowed.tokens]
    table_rows, new_firsts, new_cut = encode_table(tokenizer, windowed.tokens, windowed.tags, labels, 16)
    want, want_firsts, _ = encode(tokenizer, list(windowed.tokens), list(windowed.tags), labels, 16)
    assert new_cut == 0 and list(table_rows) == want
    rows, firsts, _ = encode_table(tokenizer, split.tokens, split.tags, labels, 16)
    trained, rows, firsts = train_windows(tokenizer, split, rows, firsts, labels, 16, False)
    assert list(trained.tokens) == list(windowed.tokens) and list(rows) == want and list(firsts) == want_firsts
    assert rows.lengths.tolist() == [len(r["input_ids"]) for r in want]  # batching reads them, not the rows


def test_a_damaged_table_is_rebuilt_not_trusted(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TUNESMITH_CACHE", str(cache))
    path = write_jsonl(tmp_path / "train.jsonl", sentences(7))
    read_tagged(path, DataSection(train=path), "data.train")
    (table,) = (cache / "tagged").glob("*.arrow")
    table.write_bytes(table.read_bytes()[:50])
    assert read_tagged(path, DataSection(train=path), "data.train").tokens == [r["tokens"] for r in sentences(7)]
    meta = table.with_suffix(".meta.json")
    for damaged in ({"rows": 7, "notes": [], "iob1_rows": "x"}, {"rows": 7, "notes": "x", "iob1_rows": 0}):
        meta.write_text(json.dumps({"bioes_rows": 0, "io_rows": 0, **damaged}))
        split = read_tagged(path, DataSection(train=path), "data.train")  # rebuilt, not trusted
        assert split.tags == [r["tags"] for r in sentences(7)] and split.iob1_rows == 0


def test_the_tag_probe_reads_only_the_sentences_of_its_seeded_words_and_fits_as_on_all(monkeypatch):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from tunesmith.models.loading import load_encoder, load_tokenizer, resolve_weights
    from tunesmith.tasks import token_classification as tc

    weights, labels = resolve_weights("tiny-bert"), ["O", "B-PER", "I-PER"]
    words = [r["tokens"] for r in sentences(30)]
    tags = [r["tags"] for r in sentences(30)]
    rows, firsts, _ = tc.encode(load_tokenizer(weights), words, tags, labels, 32)
    encoder = load_encoder(weights)
    everything = np.concatenate(tc.word_features(encoder, rows, firsts, 8, 0, "fp32"))
    y = np.asarray([labels.index(t) for row in tags for t in row])
    monkeypatch.setattr(tc, "PROBE_WORDS", 12)  # of 120 words: most sentences hold none
    pick = np.random.default_rng(5).choice(len(y), 12, replace=False)
    want = LogisticRegression(max_iter=1000, random_state=5).fit(everything[pick], y[pick])
    read = []
    per_row = tc.per_row
    monkeypatch.setattr(tc, "per_row", lambda model, rows, *a: read.append(len(rows)) or per_row(model, rows, *a))
    got = tc.fit_probe(encoder, rows, firsts, tags, labels, 8, 0, "fp32", seed=5)
    assert read[0] <= 12 < len(rows)
    np.testing.assert_allclose(got.coef_, want.coef_, atol=1e-4)


def test_a_large_set_draws_the_probes_words_from_a_sample_of_its_sentences(monkeypatch):
    import numpy as np

    from tunesmith.tasks import token_classification as tc

    monkeypatch.setattr(tc, "PROBE_SENTENCES", 6)
    read = []
    monkeypatch.setattr(
        tc, "word_features", lambda enc, rows, firsts, *a: read.extend(rows) or [np.ones((len(k), 2)) for k in a[-1]]
    )
    rows, firsts = list(range(40)), [[0, 1, 2]] * 40
    tags = [["B-X", "O", "O"]] * 40
    tc.fit_probe(None, rows, firsts, tags, ["O", "B-X"], 8, 0, "fp32", seed=1)
    assert 0 < len(read) <= 6 and len(set(read)) == len(read)
    again = []
    monkeypatch.setattr(
        tc, "word_features", lambda enc, rows, firsts, *a: again.extend(rows) or [np.ones((len(k), 2)) for k in a[-1]]
    )
    tc.fit_probe(None, rows, firsts, tags, ["O", "B-X"], 8, 0, "fp32", seed=1)
    assert again == read  # seeded
