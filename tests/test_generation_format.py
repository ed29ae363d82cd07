"""Generation data: layout detection, loss masking, EOS training, truncation counts, packing isolation."""

import json

import pandas as pd
import pytest
import torch

from tunesmith.data.conversations import read_conversations
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import load_causal_lm, load_tokenizer, resolve_weights
from tunesmith.recipe import DataSection
from tunesmith.tasks.generation.formatting import (
    DEFAULT_TEMPLATE,
    check_learnable,
    encode,
    encode_sample,
    ensure_chat_template,
    pack,
)
from tunesmith.tasks.generation.generate import causal_lm_loss

CHAT = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "where is my order"},
    {"role": "assistant", "content": "on the way"},
    {"role": "user", "content": "thanks"},
    {"role": "assistant", "content": "you are welcome"},
]


@pytest.fixture(scope="module")
def tiny():
    path = resolve_weights("tiny-llama")
    tokenizer = load_tokenizer(path)
    ensure_chat_template(tokenizer)
    return load_causal_lm(path), tokenizer


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "records, fmt, first_user",
    [
        ([{"messages": CHAT}], "messages", "where is my order"),
        ([{"question": "q1", "answer": "a1"}], "prompt_response", "q1"),
        ([{"instruction": "Summarise", "input": "long text", "output": "short"}], "alpaca", "Summarise\n\nlong text"),
        ([{"instruction": "Say hi", "input": "", "output": "hi"}], "alpaca", "Say hi"),
        ([{"text": "plain domain text"}], "text", None),
    ],
)
def test_each_layout_is_detected_and_converted(tmp_path, records, fmt, first_user):
    conv = read_conversations(write_jsonl(tmp_path / "d.jsonl", records * 3), DataSection(train="x"), "data.train")
    assert conv.format == fmt
    assert "3 " in conv.describe() and "detected" in conv.describe()
    sample = conv.samples[0]
    if first_user is None:
        assert sample == [{"role": "text", "content": "plain domain text"}]
    else:
        assert next(m["content"] for m in sample if m["role"] == "user") == first_user
        assert sample[-1]["role"] == "assistant"


def test_column_mapping_and_system_prompt(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"ask": "hello", "reply": "hi there"}])
    data = DataSection(train="x", prompt_column="ask", response_column="reply", system_prompt="You are support.")
    conv = read_conversations(path, data, "data.train")
    assert conv.samples[0] == [
        {"role": "system", "content": "You are support."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
    ]


@pytest.mark.parametrize(
    "records, message",
    [
        ([{"foo": "a", "bar": "b"}], "Cannot tell the data layout"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], "no non-empty assistant message"),
        ([{"messages": [{"role": "robot", "content": "hi"}]}], "message 1"),
        ([{"prompt": "hi", "response": ""}], "empty or non-text cell"),
    ],
)
def test_bad_generation_data_is_a_clear_error(tmp_path, records, message):
    with pytest.raises(TunesmithError, match=message):
        read_conversations(write_jsonl(tmp_path / "d.jsonl", records), DataSection(train="x"), "data.train")


def labeled_text(tokenizer, row) -> str:
    return tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])


def test_loss_only_on_assistant_turns_and_eos_is_trained(tiny):
    _, tokenizer = tiny
    row, cut = encode_sample(tokenizer, CHAT, 512, "responses")
    assert not cut
    assert labeled_text(tokenizer, row).replace(" ", "") == "ontheway</s>youarewelcome</s>"
    eos_positions = [i for i, t in enumerate(row["input_ids"]) if t == tokenizer.eos_token_id]
    assert eos_positions and all(row["labels"][i] == tokenizer.eos_token_id for i in eos_positions)
    user_start = tokenizer.decode(row["input_ids"]).index("where")
    assert "where" not in labeled_text(tokenizer, row) and user_start > 0


def test_loss_on_all_tokens_option(tiny):
    _, tokenizer = tiny
    row, _ = encode_sample(tokenizer, CHAT, 512, "all")
    assert row["labels"] == row["input_ids"]


def test_chatml_template_marks_end_of_turn_token(tiny):
    _, tokenizer = tiny
    chatml = DEFAULT_TEMPLATE.replace(
        "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}<|im_end|>{% endif %}", "<|im_end|>"
    )
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = chatml
    row, _ = encode_sample(tokenizer, CHAT[:3], 512, "responses")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    labeled = [t for t in row["labels"] if t != -100]
    assert labeled[-2:] == [im_end, tokenizer.convert_tokens_to_ids("Ċ")] or labeled[-1] == im_end


def test_truncation_is_counted_and_all_masked_refused(tiny):
    _, tokenizer = tiny
    # every prompt message long: the longest gives up half of max_length, the other still leaves no room
    long_prompt = [
        {"role": "system", "content": "rule " * 200},
        {"role": "user", "content": "word " * 200},
        {"role": "assistant", "content": "ok"},
    ]
    fits = len(encode_sample(tokenizer, CHAT, 10_000, "responses")[0]["input_ids"])
    enc = encode(tokenizer, [long_prompt, CHAT], max_length=fits, loss_on="responses")
    assert enc.truncated == [0] and enc.fully_masked == [0]
    warnings = check_learnable(enc, "data.train", fits)
    assert any("1 of 2 samples exceed" in w for w in warnings) and any("dropped" in w for w in warnings)
    only_masked = encode(tokenizer, [long_prompt], max_length=64, loss_on="responses")
    with pytest.raises(TunesmithError, match="no response token left"):
        check_learnable(only_masked, "data.train", 64)


def answer_of(tokenizer, row) -> str:
    return tokenizer.decode([t for t in row["labels"] if t != -100], skip_special_tokens=True)


def test_a_long_document_gives_up_its_middle_not_its_summary(tiny):
    """Cut from the right, a summary after a long document is lost whole: the document's middle goes instead,
    its start (the lead) and end (an instruction after it) stay."""
    _, tokenizer = tiny
    document = " ".join(f"w{i}" for i in range(400))
    sample = [{"role": "user", "content": f"{document} Summarize it."}, {"role": "assistant", "content": "a summary"}]
    enc = encode(tokenizer, [sample], max_length=128, loss_on="responses")
    row = enc.rows[0]
    assert enc.truncated == [0] and enc.fully_masked == [] and len(row["input_ids"]) == 128
    assert answer_of(tokenizer, row) == "a summary"
    prompt = tokenizer.decode(row["input_ids"])
    assert "w0 w1 w2" in prompt and "Summarize it." in prompt and " w200 " not in prompt
    assert prompt.index("w0") < prompt.index("Summarize") < prompt.index("a summary")
    # an answer too long for what is left keeps half of max_length of prompt and loses its own end
    essay = [sample[0], {"role": "assistant", "content": " ".join(f"a{i}" for i in range(300))}]
    row = encode(tokenizer, [essay], max_length=128, loss_on="responses").rows[0]
    answer = answer_of(tokenizer, row)
    assert len(row["input_ids"]) == 128 and answer.startswith("a0 a1") and "a299" not in answer
    assert 64 < row["labels"].index(next(t for t in row["labels"] if t != -100)) < 100  # 64 + the template


def test_both_sides_of_a_long_pair_keep_one_prompt(tiny):
    from tunesmith.tasks.generation.preference import encode_pair

    _, tokenizer = tiny
    prompt = [{"role": "user", "content": " ".join(f"w{i}" for i in range(400))}]
    row, cut, learnable = encode_pair(tokenizer, prompt, "short", " ".join(["long"] * 60), max_length=128)
    assert cut and learnable and len(row["rejected_input_ids"]) == 128
    first = row["labels"].index(next(t for t in row["labels"] if t != -100))
    assert row["input_ids"][:first] == row["rejected_input_ids"][:first]  # the same prompt, cut once
    assert row["rejected_labels"][first] != -100 and row["rejected_labels"][first - 1] == -100


def test_packing_never_lets_one_sample_attend_to_another(tiny):
    model, tokenizer = tiny
    samples = [
        CHAT[:3],
        [{"role": "user", "content": "refund please"}, {"role": "assistant", "content": "done"}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello, how can i help"}],
    ]
    rows = encode(tokenizer, samples, 512, "responses").rows
    packed = pack(rows, max_length=512)
    assert len(packed) == 1
    row = packed[0]
    from tunesmith.tasks.generation.generate import with_packing_mask

    inputs = with_packing_mask(
        {"input_ids": torch.tensor([row["input_ids"]]), "position_ids": torch.tensor([row["position_ids"]])}, model
    )
    with torch.no_grad():
        together = model(**inputs, use_cache=False).logits[0]
        start = 0
        for r in rows:
            alone = model(input_ids=torch.tensor([r["input_ids"]])).logits[0]
            n = len(r["input_ids"])
            torch.testing.assert_close(together[start : start + n], alone, atol=1e-4, rtol=1e-4)
            assert row["labels"][start] == -100  # never predicted from the previous sample's last token
            start += n


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_mask_is_block_diagonal_and_causal(impl):
    from tunesmith.tasks.generation.formatting import packed_attention_mask

    mask = packed_attention_mask(torch.tensor([[0, 1, 2, 0, 1, 0, 0]]), impl, torch.float32)
    allowed = mask[0, 0] if mask.dtype == torch.bool else mask[0, 0] == 0
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 0, 0],
            [0, 0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def test_packing_respects_max_length(tiny):
    _, tokenizer = tiny
    rows = encode(tokenizer, [CHAT] * 7, 512, "responses").rows
    n = len(rows[0]["input_ids"])
    packed = pack(rows, max_length=2 * n + 1)
    assert [len(p["input_ids"]) for p in packed] == [2 * n, 2 * n, 2 * n, n]


def test_loss_on_labeled_positions_only_equals_the_models_own_loss(tiny):
    model, tokenizer = tiny
    from tunesmith.engine.batching import collate

    rows = encode(tokenizer, [CHAT, CHAT[:3]], 512, "responses").rows
    batch = collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        ours = causal_lm_loss(model, dict(batch))
        theirs = model(**batch).loss
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_csv_messages_cells_hold_json_or_a_python_list(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"messages": [json.dumps(CHAT)]}).to_csv(path, index=False)
    assert read_conversations(str(path), DataSection(train="x"), "data.train").samples == [CHAT]
    pd.DataFrame({"messages": [CHAT]}).to_csv(path, index=False)  # pandas writes the Python list: [{'role': ...
    assert read_conversations(str(path), DataSection(train="x"), "data.train").samples == [CHAT]
    for bad in ("[{not json", "[{'role': 'user', 'content': __import__('os').getcwd()}]"):
        pd.DataFrame({"messages": [bad]}).to_csv(path, index=False)
        with pytest.raises(TunesmithError, match="not valid JSON"):  # literals only: never run
            read_conversations(str(path), DataSection(train="x"), "data.train")


def test_a_template_that_rejects_a_conversation_is_a_clear_error(tiny):
    _, tokenizer = tiny
    strict = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(TunesmithError, match="rejected a conversation.*System role not supported"):
        encode_sample(strict, CHAT, 512, "responses")


def test_parquet_messages_arrays_are_accepted(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"messages": [CHAT, CHAT[:3]]}).to_parquet(path)
    conv = read_conversations(str(path), DataSection(train="x"), "data.train")
    assert conv.format == "messages" and conv.samples[1] == CHAT[:3]


@pytest.mark.parametrize("loss_on", ["responses", "all"])
def test_the_token_table_holds_the_rows_encode_gives_and_is_reused(tiny, loss_on, monkeypatch):
    from tunesmith.engine import token_table
    from tunesmith.tasks.generation import token_rows

    _, tokenizer = tiny
    long_prompt = [
        {"role": "system", "content": "rule " * 200},
        {"role": "user", "content": "word " * 200},
        {"role": "assistant", "content": "ok"},
    ]
    samples = [CHAT, long_prompt, [{"role": "text", "content": "plain text to learn"}], CHAT[:3]]
    monkeypatch.setattr(token_table, "CHUNK", 2)  # several record batches, as a large set has
    max_length = len(encode_sample(tokenizer, CHAT, 10_000, loss_on)[0]["input_ids"])
    table = token_rows.encode_rows(tokenizer, samples, max_length, loss_on)
    whole = encode(tokenizer, samples, max_length, loss_on)
    assert list(table.rows) == whole.rows and table.rows.lengths.tolist() == [len(r["input_ids"]) for r in whole.rows]
    assert (table.truncated, table.fully_masked) == (whole.truncated, whole.fully_masked) and table.truncated
    kept = token_rows.learnable_rows(table)
    assert list(kept) == [r for i, r in enumerate(whole.rows) if i not in whole.fully_masked]
    assert kept.lengths.tolist() == [len(r["input_ids"]) for r in kept]

    def encoded_again(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(token_rows, "encode_sample", encoded_again)
    assert list(token_rows.encode_rows(tokenizer, samples, max_length, loss_on).rows) == whole.rows  # from the file
    template = tokenizer.chat_template
    try:  # another chat template renders other tokens: another table
        tokenizer.chat_template = template.replace("<|im_start|>", "<|start|>")
        with pytest.raises(AssertionError, match="encoded again"):
            token_rows.encode_rows(tokenizer, samples, max_length, loss_on)
    finally:
        tokenizer.chat_template = template
    with pytest.raises(AssertionError, match="encoded again"):  # another sample, or another max_length
        token_rows.encode_rows(tokenizer, samples[:-1], max_length, loss_on)
    with pytest.raises(AssertionError, match="encoded again"):
        token_rows.encode_rows(tokenizer, samples, max_length - 1, loss_on)


HASH_TEMPLATE = (
    "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}### assistant:\n{% endif %}"
)


def test_a_recipe_chooses_the_chat_template_and_bad_ones_are_refused(tmp_path):
    from tunesmith.tasks.generation.formatting import render

    tiny = resolve_weights("tiny-llama")
    own = load_tokenizer(tiny)
    own.chat_template = HASH_TEMPLATE  # a model with a template of its own
    assert not ensure_chat_template(own, "auto") and own.chat_template == HASH_TEMPLATE
    assert ensure_chat_template(own, "chatml") and own.chat_template == DEFAULT_TEMPLATE
    tok = load_tokenizer(tiny)
    (tmp_path / "hash.jinja").write_text(HASH_TEMPLATE, encoding="utf-8")
    for choice in (HASH_TEMPLATE, str(tmp_path / "hash.jinja")):  # its text, or a file holding it
        assert ensure_chat_template(tok, choice) and tok.chat_template == HASH_TEMPLATE
    rendered = render(tok, CHAT[1:3])
    assert rendered.startswith("### user:\nwhere is my order") and rendered.endswith(f"on the way{tok.eos_token}")
    row, _ = encode_sample(tok, CHAT[1:3], 512, "responses")  # the answer and its EOS are what is learned
    learned = tok.decode([i for i, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert "on the way" in learned and tok.eos_token in learned and "where is my order" not in learned
    refused = {
        "{% for m in messages %}{{ m['content'] }}{% endfor %}": "without a token generation stops at",
        "{% for m in messages %}X{% endfor %}{{ eos_token }}": "drops or reorders message text",
        "{% for m in messages %}": "model.chat_template",
        "{{ ''.__class__.__mro__ }}{{ eos_token }}": "model.chat_template",  # the sandbox refuses it
        str(tmp_path / "missing.jinja"): "is not a file",
    }
    for choice, words in refused.items():
        with pytest.raises(TunesmithError, match=words.replace(".", r"\.")):
            ensure_chat_template(load_tokenizer(tiny), choice)


def test_min_answer_support_leaves_out_answers_that_go_beyond_their_prompts(tmp_path, caplog):
    from typer.testing import CliRunner

    import tunesmith
    from tunesmith.cli import app
    from tunesmith.data.conversations import load_generation

    rows = []
    for i in range(12):  # every other answer says what its prompt does not
        rows.append({"prompt": f"Summarise: the order {i} shipped on monday", "response": f"order {i} shipped"})
        rows.append({"prompt": f"Summarise: the order {i} shipped", "response": "a storm hit paris yesterday"})
    write_jsonl(tmp_path / "train.jsonl", rows)
    data = DataSection(train=str(tmp_path / "train.jsonl"), validation=str(tmp_path / "train.jsonl"))
    with caplog.at_level("INFO"):
        kept = load_generation(data.model_copy(update={"min_answer_support": 0.5}), 42)
    assert [s[-1]["content"] for s in kept.train.samples] == [r["response"] for r in rows[::2]]
    assert len(kept.validation.samples) == len(rows)  # a validation file is kept whole
    assert "12 of 24 training rows left out" in caplog.text
    assert len(load_generation(data, 42).train.samples) == len(rows)  # unset: every row
    write_jsonl(tmp_path / "beyond.jsonl", rows[1::2])
    with pytest.raises(TunesmithError, match="none of the 12 training answers"):
        load_generation(DataSection(train=str(tmp_path / "beyond.jsonl"), min_answer_support=0.5), 42)
    write_jsonl(tmp_path / "text.jsonl", [{"text": "plain text"}] * 4)
    with pytest.raises(TunesmithError, match="plain text has no prompt"):
        load_generation(DataSection(train=str(tmp_path / "text.jsonl"), min_answer_support=0.5), 42)
    # the data check says how many rows a run will leave out, before it runs
    recipe = {"task": "generation", "model": "tiny-llama", "data": {"train": str(tmp_path / "train.jsonl")}}
    recipe["data"]["min_answer_support"] = 0.5
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    checked = CliRunner().invoke(app, ["data", "check", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "check")])
    entry = json.loads((tmp_path / "check" / "data_check.json").read_text())["datasets"][0]
    assert entry["answer_support"] == {"least": 0.5, "rows": 24, "left_out": 12}
    assert entry["lengths"]["count"] == 12  # lengths measured on the rows training reads
    assert "leaves out 12 of 24 training rows" in " ".join(checked.output.split())
    for wrong, says in (
        ({"task": "classification", "data": {"train": "x.csv", "min_answer_support": 0.5}}, "needs task: generation"),
        ({**recipe, "method": {"name": "preference"}}, "preference pairs from a file are kept whole"),
    ):
        with pytest.raises(TunesmithError, match=says):
            tunesmith.load_recipe({"model": "tiny-llama", **wrong})


def test_plain_text_beside_a_label_column_says_how_to_answer_with_the_labels(tmp_path):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    pd.DataFrame({"text": ["great film", "dull plot"], "label": ["positive", "negative"]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    plain = read_conversations(str(tmp_path / "t.csv"), DataSection(train="t.csv"), "data.train")
    assert plain.format == "text" and "data.prompt_column: text and data.response_column: label" in plain.describe()
    paired = read_conversations(
        str(tmp_path / "t.csv"), DataSection(train="t.csv", prompt_column="text", response_column="label"), "data.train"
    )
    assert paired.format == "prompt_response" and paired.samples[0][-1]["content"] == "positive"
    assert "not read" not in paired.describe()
    recipe = {"task": "generation", "model": "tiny-llama", "data": {"train": str(tmp_path / "t.csv")}}
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    checked = CliRunner().invoke(app, ["data", "check", str(tmp_path / "r.yaml")])
    assert "column 'label' is not read" in " ".join(checked.output.split())
