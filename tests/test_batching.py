from tunesmith.engine.batching import (
    PAD_BUDGET,
    WINDOWS,
    collate,
    grouping_window,
    length_grouped_batches,
    padded_width,
    tokenize,
)
from tunesmith.models.loading import load_tokenizer, resolve_weights


def test_length_grouped_batches_cover_every_index_once_and_group_lengths():
    lengths = [(i * 37) % 101 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=10, seed=0, window=50)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches would spread ~90 tokens


def test_batches_depend_on_seed_and_are_repeatable():
    lengths = list(range(200))
    assert length_grouped_batches(lengths, 8, seed=1) == length_grouped_batches(lengths, 8, seed=1)
    assert length_grouped_batches(lengths, 8, seed=1) != length_grouped_batches(lengths, 8, seed=2)


def padding(lengths, batches) -> float:
    """Tokens the batches compute (each padded to its longest) over the real ones."""
    return sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(lengths)


def test_a_window_of_one_batch_is_plain_shuffling_and_wider_windows_pad_less():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    plain, small, wide = (length_grouped_batches(lengths, 8, seed=3, window=w) for w in (1, 4, 50))
    assert sorted(i for b in plain for i in b) == sorted(i for b in small for i in b) == list(range(1000))
    assert (
        padding(lengths, plain) > 1.5 > padding(lengths, small) > padding(lengths, wide)
    )  # uniform 1-101: random batches waste ~70%


def test_the_window_is_the_most_random_one_within_the_padding_budget():
    assert grouping_window([20] * 500, 8, seed=0) == 1  # equal lengths: shuffling costs no padding
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    window = grouping_window(lengths, 8, seed=0)
    assert 1 < window < 50 and padding(lengths, length_grouped_batches(lengths, 8, 0, window=window)) <= PAD_BUDGET
    smaller = WINDOWS[WINDOWS.index(window) - 1]
    assert padding(lengths, length_grouped_batches(lengths, 8, 0, window=smaller)) > PAD_BUDGET


def test_group_by_length_false_trains_on_plain_shuffled_batches(toy_data, tmp_path, monkeypatch):
    import tunesmith
    import tunesmith.engine.loop as loop

    windows = []
    real = loop.length_grouped_batches
    monkeypatch.setattr(loop, "grouping_window", lambda *a: 7)
    monkeypatch.setattr(loop, "length_grouped_batches", lambda *a, **k: windows.append(k["window"]) or real(*a, **k))
    recipe = {**toy_data["recipe"], "train": {**toy_data["recipe"]["train"], "epochs": 1}}
    tunesmith.run(recipe, output_dir=tmp_path / "grouped")
    tunesmith.run({**recipe, "train": {**recipe["train"], "group_by_length": False}}, output_dir=tmp_path / "plain")
    assert windows == [7, 1]


def test_collate_pads_to_longest_and_masks_padding():
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1]}, {"input_ids": [5], "attention_mask": [1]}]
    batch = collate(rows, pad_id=0, labels=[1, 0])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_long_batches_are_padded_to_few_widths_within_the_cap():
    """A CPU keeps buffers per input shape: widths from 128 tokens are rounded to 8 steps per doubling, never past
    the cap (train.max_length) and never under the longest row."""
    widths = {padded_width(n) for n in range(200, 300)}
    assert len(widths) <= 8 and all(padded_width(n) >= n and padded_width(n) <= n * 1.125 for n in range(1, 2049))
    assert padded_width(100) == 100 and padded_width(129) == 144 and padded_width(257) == 288
    rows = [{"input_ids": [5] * 257, "labels": [1] * 257}, {"input_ids": [5] * 3, "labels": [1] * 3}]
    batch = collate(rows, pad_id=0, cap=1024)
    assert batch["input_ids"].shape == (2, 288) and int((batch["labels"] != -100).sum()) == 260
    assert collate(rows, pad_id=0, cap=270)["input_ids"].shape == (2, 270)  # the cap wins over rounding
    assert collate(rows, pad_id=0, cap=100)["input_ids"].shape == (2, 257)  # a row longer than the cap is kept
    assert collate(rows, pad_id=0)["input_ids"].shape == (2, 257)  # no cap: exact widths


def test_tokenize_truncates_and_reports_original_lengths():
    tok = load_tokenizer(resolve_weights("tiny-bert"))
    rows, cut = tokenize(tok, ["short", "a much longer text than allowed"], None, max_length=8)
    assert len(rows[1]["input_ids"]) == 8 and len(rows[0]["input_ids"]) < 8
    assert len(cut) == 1 and cut[0] > 8


def test_inference_batches_cut_where_padding_would_cost_on_a_cpu():
    from tunesmith.engine.batching import inference_batches

    lengths = [40, 9, 12, 30, 10, 11, 8, 35, 10, 9, 13, 12, 9, 11, 28, 10]  # 16 sst2-like requests
    for cpu in (True, False):
        batches = inference_batches(lengths, 64, cpu)
        assert sorted(i for b in batches for i in b) == list(range(16))  # every row once
        assert all(lengths[b[0]] == max(lengths[i] for i in b) for b in batches)  # longest first: it sets the padding
    assert len(inference_batches(lengths, 64, cpu=False)) == 1  # a GPU pads for free: one batch
    split = inference_batches(lengths, 64, cpu=True)
    padded = sum(lengths[b[0]] * len(b) for b in split)
    assert 2 <= len(split) <= 4 and padded < 0.6 * 40 * 16  # far fewer tokens than one batch padded to 40
    assert all(len(b) <= 3 for b in inference_batches(lengths, 3, cpu=True))
    assert inference_batches([5] * 10, 4, cpu=True) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]  # equal lengths: by size only
