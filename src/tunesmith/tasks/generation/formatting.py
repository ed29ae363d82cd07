"""Conversations -> token ids and labels, done the way inference will see them.

- The model's own chat template renders every sample; a model without one gets DEFAULT_TEMPLATE,
  which is stored in the saved tokenizer so inference renders prompts the same way.
- Labels are -100 except on assistant turns, which include the end-of-turn token: the tuned
  model learns to stop. Spans come from rendering the conversation prefix by prefix and mapping
  characters to tokens, so any template works as long as it renders prefixes consistently.
- Packing concatenates samples into rows of max_length with position ids restarting at each
  sample, and `packed_attention_mask` gives each row a block-diagonal causal mask, so samples never
  see each other. (transformers 5 only remaps causal positions for packed rows, which still lets a
  token see earlier samples' tokens at lower positions; we pass the explicit 4D mask instead.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import TunesmithError
from ...recipe import is_inline_or_named

# ChatML markers, but turns end with the tokenizer's own EOS so `generate` stops without extra config.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}<|im_end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


MAX_TEMPLATE_BYTES = 100_000


def ensure_chat_template(tokenizer, choice: str = "auto") -> bool:
    """Set the template samples are rendered with, which the tuned model is saved with. `choice` is the recipe's
    model.chat_template: 'auto' keeps the model's own and gives a template-less (base) tokenizer DEFAULT_TEMPLATE;
    'chatml' sets DEFAULT_TEMPLATE over the model's own; anything else is a Jinja template's text, or a file
    holding one. True when the template is not the model's own."""
    if choice == "auto" and getattr(tokenizer, "chat_template", None):
        return False
    if choice in ("auto", "chatml"):
        if tokenizer.eos_token is None:
            raise TunesmithError(
                "The tokenizer has neither a chat template nor an EOS token, so a tuned model could never stop."
            )
        tokenizer.chat_template = DEFAULT_TEMPLATE
        return True
    tokenizer.chat_template = choice if is_inline_or_named(choice) else _template_file(choice)
    _check_template(tokenizer)
    return True


def template_source(choice: str) -> str:
    """How model.chat_template reads in a log line."""
    if choice in ("auto", "chatml"):
        return "tunesmith's ChatML default" + (" (the model has none)" if choice == "auto" else "")
    return "the recipe's own" if is_inline_or_named(choice) else f"the recipe's, from {choice}"


def _template_file(path: str) -> str:
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise TunesmithError(
            f"model.chat_template: {path} is not a file; give 'auto', 'chatml', a Jinja template's text, or a file "
            "holding one."
        )
    if file.stat().st_size > MAX_TEMPLATE_BYTES:
        raise TunesmithError(f"model.chat_template: {path} is over {MAX_TEMPLATE_BYTES:,} bytes; not a chat template.")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TunesmithError(f"model.chat_template: {path} is not UTF-8 text.") from None


def _check_template(tokenizer) -> None:
    """A recipe's own template must render a conversation with its text in order, and end an answer with a token
    generation stops at: the loss covers that token, so without one the tuned model would never stop."""
    probe = [{"role": "user", "content": "\x02question\x02"}, {"role": "assistant", "content": "\x02answer\x02"}]
    try:
        text = render(tokenizer, probe)
        render(tokenizer, probe[:1], add_generation_prompt=True)
    except TunesmithError as err:
        raise TunesmithError(f"model.chat_template: {err}") from None
    except Exception as err:  # noqa: BLE001  (a template that does not parse, or calls what it cannot)
        raise TunesmithError(f"model.chat_template does not render ({type(err).__name__}: {err}).") from None
    asked, answered = text.find("\x02question\x02"), text.find("\x02answer\x02")
    if asked < 0 or answered < asked:
        raise TunesmithError("model.chat_template drops or reorders message text: use {{ message['content'] }}.")
    after = tokenizer(text[answered + len("\x02answer\x02") :], add_special_tokens=False)["input_ids"]
    if not set(after) & set(stop_token_ids(tokenizer)):
        raise TunesmithError(
            "model.chat_template ends an assistant turn without a token generation stops at (the EOS token, or "
            "<|im_end|>, <|eot_id|>, <end_of_turn>): a tuned model would never stop. End assistant turns with "
            "{{ eos_token }}."
        )


def with_default_system(tokenizer, system: str | None) -> None:
    """Make `system` the chat template's own default system turn, put first where a conversation has none: a
    model tuned under data.system_prompt then answers, through any tool that renders its template (transformers,
    vLLM, TGI, an Ollama Modelfile), the way it was trained. The text enters the template as a JSON-escaped string
    literal, which Jinja reads as data, braces and all."""
    if not system:
        return
    import json

    literal = json.dumps(system, ensure_ascii=False)
    lead = (
        "{%- if not messages or messages[0]['role'] != 'system' %}"
        f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}"
        "{%- endif %}"
    )
    ensure_chat_template(tokenizer)
    template = tokenizer.chat_template
    if isinstance(template, dict):  # named templates (tool use, RAG): each gets the default
        tokenizer.chat_template = {name: lead + t for name, t in template.items()}
    else:
        tokenizer.chat_template = lead + template


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the end-of-turn marker of ChatML-style templates, when the vocabulary has one."""
    ids = {tokenizer.eos_token_id}
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


@dataclass
class Encoded:
    rows: list[dict]  # input_ids, attention_mask, labels
    truncated: list[int] = field(default_factory=list)  # sample indices cut at max_length
    fully_masked: list[int] = field(default_factory=list)  # samples left with no token to learn from


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError as err:
        roles = [m["role"] for m in messages]
        raise TunesmithError(
            f"The model's chat template rejected a conversation with roles {roles}: {err}. Some templates accept no "
            "system message (drop data.system_prompt) or need strictly alternating user/assistant turns."
        ) from None


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (end-of-turn included)."""
    full = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not (full.startswith(upto) and upto.startswith(prefix)):
            raise TunesmithError(
                "The model's chat template renders a conversation differently from its prefixes, so assistant turns "
                "cannot be located for loss masking. Set method.loss_on=all to train on every token."
            )
        spans.append((len(prefix), len(upto)))
    return full, spans


def encode_sample(
    tokenizer, messages: list[dict], max_length: int, loss_on: str, cut_as: int | None = None
) -> tuple[dict, bool]:
    """One sample -> row with labels; also whether it was cut at max_length.

    A sample over max_length gives up prompt tokens before answer tokens (see `_cut_prompt`): cut from the right,
    a long document's summary would be lost whole. `cut_as`: the uncut length the prompt is shortened for (default:
    this sample's own); the two sides of a preference pair are cut as the longer one, so both keep one prompt."""
    if messages[0]["role"] == "text":  # plain text: no template, learn every token and EOS
        ids = tokenizer(messages[0]["content"])["input_ids"] + [tokenizer.eos_token_id]
        labels, full = list(ids), cut_as or len(ids)
    else:
        text, spans = assistant_spans(tokenizer, messages)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        full = cut_as or len(ids)  # the length before any cut
        if loss_on == "all":
            labels = list(ids)
        else:
            labels = [tid if any(a <= start < b for a, b in spans) else -100 for tid, (start, _) in zip(ids, offsets)]
            if full > max_length and spans:
                span = _prompt_span(text, messages, spans[-1][0])
                ids, labels = _cut_prompt(ids, labels, offsets, span, full - max_length, keep=max_length // 2)
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}, full > max_length


PROMPT_HEAD = 0.75  # of the prompt tokens a cut keeps: the start (a document's lead); the rest from its end


def _prompt_span(text: str, messages: list[dict], before: int) -> tuple[int, int] | None:
    """Character span, in the rendered text, of the longest system or user message before `before` (where the
    last answer starts): the one a cut shortens. None when the template changed the contents past finding."""
    found, pos = [], 0
    for message in messages:
        content = message["content"].strip()
        at = text.find(content, pos) if content else -1
        if at < 0:
            continue
        pos = at + len(content)
        if message["role"] != "assistant" and pos <= before:
            found.append((at, pos))
    return max(found, key=lambda span: span[1] - span[0], default=None)


def _cut_prompt(ids: list, labels: list, offsets: list, span, excess: int, keep: int) -> tuple[list, list]:
    """Drop up to `excess` tokens from the middle of the prompt message at `span`, keeping at least `keep` of them
    (half of max_length: an answer too long for the rest is then cut from its end). The middle, because the start
    of a long document carries most of its content and its end is where an instruction after it sits; head and
    tail also truncated long texts best for BERT classification (Sun et al., 2019)."""
    if span is None:
        return ids, labels
    inside = [i for i, (a, b) in enumerate(offsets) if a >= span[0] and b <= span[1] and b > a]
    drop = min(excess, len(inside) - keep)
    if drop <= 0:
        return ids, labels
    head = inside[0] + round((len(inside) - drop) * PROMPT_HEAD)
    return ids[:head] + ids[head + drop :], labels[:head] + labels[head + drop :]


def encode(tokenizer, samples: list[list[dict]], max_length: int, loss_on: str) -> Encoded:
    out = Encoded(rows=[])
    for i, messages in enumerate(samples):
        row, cut = encode_sample(tokenizer, messages, max_length, loss_on)
        out.rows.append(row)
        if cut:
            out.truncated.append(i)
        # position 0 is never a target (nothing predicts it), so it does not count as learnable
        if all(label == -100 for label in row["labels"][1:]):
            out.fully_masked.append(i)
    return out


def check_learnable(enc: Encoded, role: str, max_length: int) -> list[str]:
    """Warnings for cut/masked samples; an error when no sample has a token to learn."""
    n = len(enc.rows)
    if n and len(enc.fully_masked) == n:
        raise TunesmithError(
            f"{role}: all {n} samples have no response token left to learn from (responses empty, or cut off by "
            f"train.max_length={max_length}). Raise train.max_length, check the response column, or set "
            f"method.loss_on=all."
        )
    warnings = []
    if enc.truncated:
        warnings.append(
            f"{role}: {len(enc.truncated)} of {n} samples exceed train.max_length={max_length} tokens and were cut "
            "(the longest prompt message shortened in its middle first, then the answer's end)."
        )
    if enc.fully_masked:
        warnings.append(
            f"{role}: {len(enc.fully_masked)} of {n} samples have no response token within max_length; "
            "they teach nothing and are dropped."
        )
    return warnings


def learnable(enc: Encoded) -> list[dict]:
    dropped = set(enc.fully_masked)
    return [row for i, row in enumerate(enc.rows) if i not in dropped]


def pack(rows: list[dict], max_length: int) -> list[dict]:
    """Greedy packing in the given order into rows of at most max_length tokens.

    Each sample keeps its own position ids (0..len-1); its first label is masked because in a packed
    row it would be predicted from the previous sample's last token.
    """
    packed, current = [], None
    for row in rows:
        n = len(row["input_ids"])
        if current is None or len(current["input_ids"]) + n > max_length:
            current = {"input_ids": [], "labels": [], "position_ids": []}
            packed.append(current)
        current["input_ids"] += row["input_ids"]
        current["labels"] += [-100] + row["labels"][1:]
        current["position_ids"] += list(range(n))
    return packed


def packed_attention_mask(position_ids: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """(batch, 1, T, T) mask: a token sees earlier tokens of its own sample only.

    A sample starts wherever the position id does not continue the previous one (padding = 0s,
    each pad its own one-token sample). sdpa and flex take a boolean "may attend" mask; eager
    attention adds the mask to its scores, so it gets 0 / -inf floats.
    """
    first = position_ids[:, :1] - 1
    sample = (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (sample[:, :, None] == sample[:, None, :]) & causal
    allowed = allowed[:, None]
    if attn_implementation in ("sdpa", "flex_attention"):
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def auto_length(recipe, tokenizer, samples: list[list[dict]]):
    """(recipe, reason): train.max_length chosen from the rendered training samples when the recipe leaves it unset
    (the rule and why decoders may go to GEN_CAP: runs/auto_length.py); else the recipe itself and None."""
    import numpy as np

    from ...runs.auto_length import GEN_CAP, from_lengths, model_limit, sample_indices

    if "max_length" in recipe.train.model_fields_set or not samples:
        return recipe, None
    loss_on = getattr(recipe.method, "loss_on", "responses")
    lengths = np.array(
        [
            len(encode_sample(tokenizer, samples[i], 10**9, loss_on)[0]["input_ids"])
            for i in sample_indices(len(samples), recipe.train.seed)
        ]
    )
    return from_lengths(
        recipe, lengths, lambda: model_limit(tokenizer, recipe.model.name, GEN_CAP), "training samples", GEN_CAP
    )
