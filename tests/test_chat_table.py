"""Generation files read in chunks into a memory-mapped table of conversations cached by the file's bytes: the
conversations a whole read gives, errors that name rows across chunks, the table reused by the next read (what
it left out said again), and the token table read from it."""

import json

import pytest

from tunesmith.data import chat_table, readers
from tunesmith.data.bad_rows import leaving_out
from tunesmith.data.conversations import load_generation, read_conversations
from tunesmith.errors import TunesmithError
from tunesmith.recipe import DataSection
from tunesmith.tasks.generation.token_rows import encode_rows


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(chat_table, "CHUNK", 4)  # several chunks, as a large file has


def pairs(n: int) -> list[dict]:
    return [{"question": f"question {i} é", "answer": f"answer {i}"} for i in range(n)]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def expected(rows, system=None) -> list[list[dict]]:
    head = [{"role": "system", "content": system}] if system else []
    return [
        [*head, {"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}] for r in rows
    ]


def test_a_chunked_read_gives_the_conversations_and_samples_read_like_a_list(tmp_path, small_chunks):
    path = write_jsonl(tmp_path / "train.jsonl", pairs(11))
    conv = read_conversations(path, DataSection(train=path, system_prompt="Be brief."), "data.train")
    want = expected(pairs(11), "Be brief.")
    assert isinstance(conv.samples, chat_table.Samples) and conv.format == "prompt_response"
    assert conv.samples == want and len(conv) == 11
    assert conv.samples[3] == want[3] and conv.samples[-1] == want[-1] and conv.samples[2:9:3] == want[2:9:3]
    picked = conv.samples.take([9, 1, 5]).take([2, 0])  # a sample of a sample: positions compose
    assert list(picked) == [want[5], want[9]] and picked != want
    assert conv.samples + [["x"]] == [*want, ["x"]]


def test_a_bad_row_is_named_by_its_place_in_the_file_and_leaves_no_table(tmp_path, small_chunks, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    rows = pairs(11)
    rows[6]["answer"] = " "
    rows[9]["answer"] = ""
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(TunesmithError, match=r"data row\(s\) 7") as err:
        read_conversations(path, DataSection(train=path), "data.train")
    assert "column 'answer'" in str(err.value)
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]  # no table, no partial file
    with leaving_out():
        conv = read_conversations(path, DataSection(train=path), "data.train")
    assert conv.samples == expected([r for i, r in enumerate(rows) if i not in (6, 9)])
    assert len(list((tmp_path / "cache" / "chats").glob("*.arrow"))) == 1
    with pytest.raises(TunesmithError, match=r"data row\(s\) 7"):  # the strict read has a table of its own: none
        read_conversations(path, DataSection(train=path), "data.train")


def test_the_second_read_opens_the_table_and_says_again_what_was_left_out(tmp_path, small_chunks, monkeypatch, caplog):
    rows = pairs(9)
    rows[2]["answer"] = ""
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    data = DataSection(train=path)
    with leaving_out():
        first = read_conversations(path, data, "data.train")
    monkeypatch.setattr(chat_table, "iter_table", lambda *a, **k: pytest.fail("parsed again"))
    caplog.clear()
    with leaving_out():
        again = read_conversations(path, data, "data.train")
    assert again.samples == first.samples and len(again) == 8
    assert "left out (train.data_check: warn)" in caplog.text and "data row(s) 3" in caplog.text


def test_a_changed_file_or_setting_makes_a_new_table(tmp_path, small_chunks):
    path = write_jsonl(tmp_path / "train.jsonl", pairs(6))
    data = DataSection(train=path)
    assert read_conversations(path, data, "data.train").samples == expected(pairs(6))
    write_jsonl(tmp_path / "train.jsonl", pairs(5))
    assert read_conversations(path, data, "data.train").samples == expected(pairs(5))
    shaped = read_conversations(path, DataSection(train=path, system_prompt="Hi."), "data.train")
    assert shaped.samples == expected(pairs(5), "Hi.")


def test_a_damaged_table_is_rebuilt_not_trusted(tmp_path, small_chunks, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TUNESMITH_CACHE", str(cache))
    path = write_jsonl(tmp_path / "train.jsonl", pairs(7))
    read_conversations(path, DataSection(train=path), "data.train")
    (table,) = (cache / "chats").glob("*.arrow")
    table.write_bytes(table.read_bytes()[:50])
    assert read_conversations(path, DataSection(train=path), "data.train").samples == expected(pairs(7))
    table.with_suffix(".meta.json").write_text(json.dumps({"rows": 7, "notes": [], "format": 3, "columns": []}))
    conv = read_conversations(path, DataSection(train=path), "data.train")  # a damaged summary: rebuilt too
    assert conv.format == "prompt_response" and conv.samples == expected(pairs(7))


def test_splits_and_samples_are_views_of_the_table_with_the_rows_a_list_would_give(tmp_path, small_chunks):
    path = write_jsonl(tmp_path / "train.jsonl", pairs(30))
    data = DataSection(train=path, max_train_samples=12, max_eval_samples=3, validation_split=0.2)
    got = load_generation(data, seed=5)
    assert isinstance(got.train.samples, chat_table.Samples)
    assert isinstance(got.validation.samples, chat_table.Samples)
    seen = [s[0]["content"] for s in [*got.train.samples, *got.validation.samples]]
    assert len(got.train) == 12 - 2 and len(got.validation) == 2 and len(set(seen)) == len(seen)
    again = load_generation(data, seed=5)
    assert again.train.samples == got.train.samples and again.validation.samples == got.validation.samples


def test_the_token_table_is_read_from_the_conversation_table(tmp_path, small_chunks):
    from tunesmith.models.loading import load_tokenizer, resolve_weights
    from tunesmith.tasks.generation.formatting import ensure_chat_template

    tokenizer = load_tokenizer(resolve_weights("tiny-llama"))
    ensure_chat_template(tokenizer, "auto")
    path = write_jsonl(tmp_path / "train.jsonl", pairs(10))
    conv = read_conversations(path, DataSection(train=path), "data.train")
    part = conv.samples.take([7, 2, 4])
    from_table, from_list = (
        encode_rows(tokenizer, part, 64, "responses"),
        encode_rows(tokenizer, list(part), 64, "responses"),
    )
    assert list(from_table.rows) == list(from_list.rows) and len(from_table.rows) == 3
    assert from_table.rows.path != from_list.rows.path  # named by the table's rows, not by re-reading them


def test_a_whole_read_is_no_longer_needed(tmp_path, small_chunks, monkeypatch):
    """The reader parses the file a chunk at a time: never all of it at once."""
    seen = []
    chunks = readers.iter_table

    def counted(*args, **kwargs):
        for frame in chunks(*args, **kwargs):
            seen.append(len(frame))
            yield frame

    monkeypatch.setattr(chat_table, "iter_table", counted)
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))  # no table of an earlier test's same bytes
    path = write_jsonl(tmp_path / "train.jsonl", pairs(10))
    read_conversations(path, DataSection(train=path), "data.train")
    assert seen == [4, 4, 2]
