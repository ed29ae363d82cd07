"""Tokenized rows as a memory-mapped table on disk: the same rows `tokenize` gives, written once per texts and
tokenizer, read back by the next run, rebuilt when damaged."""

import pytest

from tunesmith.engine import token_table as tt
from tunesmith.engine.batching import collate, row_lengths, tokenize
from tunesmith.models.loading import load_tokenizer, resolve_weights


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_weights("tiny-bert"))


TEXTS = ["a good movie", "bad", "the plot is thin and long " * 30, "é ü 漢字 🙂", "ok then"]


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("pairs", [None, ["x", "y y", "z", "w", "v v v"]])
def test_the_table_holds_the_rows_tokenize_gives(model, pairs, monkeypatch):
    tokenizer = load_tokenizer(resolve_weights(model))
    monkeypatch.setattr(tt, "CHUNK", 2)  # several chunks, as a large file has
    rows, cut = tt.token_table(tokenizer, TEXTS, pairs, 32)
    expected, expected_cut = tokenize(tokenizer, TEXTS, pairs, 32)
    assert len(rows) == len(expected) and [rows[i] for i in range(len(rows))] == expected
    assert cut == expected_cut and cut and row_lengths(rows) == [len(r["input_ids"]) for r in expected]
    assert rows[-1] == expected[-1] and rows[1:3] == expected[1:3]
    batch = collate([rows[0], rows[2]], tokenizer.pad_token_id, [0, 1])
    assert batch["input_ids"].shape == (2, 32) and batch["attention_mask"][0].sum() == len(expected[0]["input_ids"])


def test_a_second_call_opens_the_cached_file_and_other_texts_get_their_own(tokenizer, monkeypatch):
    first, _ = tt.token_table(tokenizer, TEXTS, None, 32)
    tokenizer(["a long text " * 40], truncation=True, max_length=8)  # leaves truncation set on the fast tokenizer

    def tokenized_again(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(tt, "tokenize_marked", tokenized_again)
    again, _ = tt.token_table(tokenizer, TEXTS, None, 32)
    assert again.path == first.path and list(again) == list(first)
    with pytest.raises(AssertionError, match="tokenized again"):  # other texts, or another max_length: new tokens
        tt.token_table(tokenizer, TEXTS[:-1], None, 32)
    with pytest.raises(AssertionError, match="tokenized again"):
        tt.token_table(tokenizer, TEXTS, None, 16)


def test_a_damaged_cache_file_is_rebuilt_not_trusted(tokenizer):
    rows, _ = tt.token_table(tokenizer, ["one text", "two texts"], None, 16)
    rows.path.write_bytes(b"not an arrow file")
    again, _ = tt.token_table(tokenizer, ["one text", "two texts"], None, 16)
    assert list(again) == tokenize(tokenizer, ["one text", "two texts"], None, 16)[0]


def test_an_empty_split_is_an_empty_table(tokenizer):
    rows, cut = tt.token_table(tokenizer, [], None, 16)
    assert len(rows) == 0 and cut == [] and row_lengths(rows) == []
    with pytest.raises(IndexError):
        rows[0]


def test_texts_of_unknown_tokens_only_are_counted_the_same_on_the_table(tokenizer):
    from tunesmith.engine.batching import unknown_only

    texts = ["🙂🙂", "a good movie", "漢字", "ok 🙂", "🙂"]
    rows, _ = tt.token_table(tokenizer, texts, None, 16)
    listed = tokenize(tokenizer, texts, None, 16)[0]
    assert unknown_only(tokenizer, rows) == unknown_only(tokenizer, listed) >= 1


SENTENCES = [
    ["Aspirin", "eased", "the", "migraine"],
    ["no", "entity", "here"],
    ["long"] * 40,
    ["Crohn", "'s", "disease"],
]
TAGS = [["O", "O", "O", "B-Disease"], ["O", "O", "O"], ["O"] * 40, ["B-Disease", "I-Disease", "I-Disease"]]
LABELS = ["B-Disease", "I-Disease", "O"]


@pytest.mark.parametrize("label_all", [False, True])
def test_token_classification_rows_come_back_from_the_table_as_encode_makes_them(tokenizer, label_all, monkeypatch):
    from tunesmith.tasks import token_classification as tc

    monkeypatch.setattr(tt, "CHUNK", 3)  # several record batches
    rows, firsts, cut = tc.encode_table(tokenizer, SENTENCES, TAGS, LABELS, 16, label_all)
    expected, expected_firsts, expected_cut = tc.encode(tokenizer, SENTENCES, TAGS, LABELS, 16, label_all)
    assert list(rows) == expected and list(firsts) == expected_firsts
    assert cut == expected_cut == 1 and -1 in firsts[2]  # the 40-word sentence lost its end
    batch = collate([rows[0], rows[2]], tokenizer.pad_token_id)
    assert batch["labels"].shape == batch["input_ids"].shape and (batch["labels"][0] == -100).any()


def test_token_classification_tables_are_reused_only_for_the_same_words_tags_and_labels(tokenizer, monkeypatch):
    from tunesmith.tasks import token_classification as tc

    first, _, _ = tc.encode_table(tokenizer, SENTENCES, TAGS, LABELS, 16)

    def encoded_again(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(tc, "encode", encoded_again)
    again, _, _ = tc.encode_table(tokenizer, SENTENCES, TAGS, LABELS, 16)
    assert again.path == first.path and list(again) == list(first)
    other_tags = [list(t) for t in TAGS]
    other_tags[1][0] = "B-Disease"
    joined = [["Aspirin eased", "the", "migraine"], *SENTENCES[1:]]  # the same characters split into other words
    for call in (
        (SENTENCES, other_tags, LABELS, 16),
        (joined, [["O", "O", "B-Disease"], *TAGS[1:]], LABELS, 16),
        (SENTENCES, TAGS, ["O", "B-Disease", "I-Disease"], 16),  # the same labels in another order: other ids
        (SENTENCES, TAGS, LABELS, 32),
    ):
        with pytest.raises(AssertionError, match="encoded again"):
            tc.encode_table(tokenizer, *call)
