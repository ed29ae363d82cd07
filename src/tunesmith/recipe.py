"""THE recipe schema: one strict, versioned pydantic model for every run.

Unknown keys are rejected with a "did you mean"; keys from older tools/schemas get a
message naming what replaced them.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .errors import TunesmithError, did_you_mean
from .paths import data_roots

SCHEMA_VERSION = 1

# Keys users bring from HF TrainingArguments or older recipes -> our name for them.
RENAMED = {
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "per_device_eval_batch_size": "batch_size (in the eval section)",
    "gradient_accumulation_steps": "grad_accum",
    "max_seq_length": "max_length",
    "sequence_len": "max_length",
    "warmup_steps": "warmup_ratio",
    "lr_scheduler_type": "lr_scheduler",
    "neftune_noise_alpha": "neftune_alpha",
    "base_model": "model.name",
    "model_name_or_path": "model.name",
    "output_dir": "output.dir",
    "chat_template": "model.chat_template",
    "template": "model.chat_template",
}


class Strict(BaseModel):
    # allow_inf_nan=False: `train.lr: .inf` would train a NaN model that still reads "finished"
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelSection(Strict):
    name: str = Field(description="Registry alias (see `tunesmith models list`), Hugging Face id or local folder.")
    revision: str | None = Field(None, description="Hub revision, for Hub model ids only.")
    chat_template: str = Field(
        "auto",
        min_length=1,
        max_length=100_000,
        description="Decoders: the chat template samples are rendered with and the tuned model is saved with. "
        "'auto' = the model's own (ChatML ending turns with EOS for a model without one); 'chatml' = that ChatML "
        "even over the model's own (e.g. one that refuses system messages); else a Jinja template: its text, or "
        "a file holding it (relative to the recipe).",
    )


class DataSection(Strict):
    train: str | None = Field(
        None,
        description="Training file (.csv, .tsv, .jsonl, .json, .parquet). Relative paths resolve against the "
        "recipe's folder. Required unless `hub` names a dataset.",
    )
    hub: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$",
        description="A Hugging Face Hub dataset id (org/name) instead of files: its train, validation and test "
        "splits are read through `datasets.load_dataset` (cached) and used as files would be; class numbers "
        "become class names. Offline, TUNESMITH_DATA_ROOT (or --data-root) names a mirror holding org/name/ "
        "(`tunesmith data mirror` saves one) or name/ with train.csv, validation.csv, test.csv (any supported "
        "extension).",
    )
    config: str | None = Field(None, max_length=200, description="hub: the dataset's configuration (subset) name.")
    revision: str | None = Field(
        None, max_length=200, description="hub: a branch, tag or commit of the dataset (default: the latest)."
    )
    split_map: dict[Literal["train", "validation", "test"], str] | None = Field(
        None,
        description="hub: the dataset's split name for each role, where it is not the usual one (e.g. "
        "{validation: dev}); default: train; validation, valid or dev; test.",
    )
    source: str | None = Field(
        None,
        description="Where the files came from (filled in by tunesmith for hub data and in-memory tables; "
        "informational).",
    )
    validation: str | None = Field(
        None, description="Validation file; if absent, a stratified split of train is carved off."
    )
    test: str | None = Field(
        None, description="Test file; when given, it is the evaluation set and validation only drives early stopping."
    )
    text_column: str = Field("text", description="Column holding the input text.")
    text_pair_column: str | None = Field(None, description="Optional second text column (e.g. sentence pairs).")
    label_column: str = Field("label", description="Column holding the label (any strings; kept as-is in outputs).")
    multi_label: bool = Field(
        False,
        description="Several labels per text: the label column holds lists (JSONL/Parquet) or strings split on "
        "label_separator; an empty cell means no label. A sigmoid head with thresholds chosen on validation.",
    )
    label_separator: str | None = Field(
        None,
        min_length=1,
        description="Multi-label: split label strings on this (e.g. '|'); setting it turns multi_label on.",
    )
    tokens_column: str = Field(
        "tokens", description="Token classification: column holding each sentence's words (a list)."
    )
    tags_column: str = Field(
        "tags", description="Token classification: column holding one IOB2 tag per word (B-TYPE, I-TYPE, O)."
    )
    entities_column: str = Field(
        "entities",
        description="Token classification, span form: column holding [{start, end, label}] character spans of "
        "text_column (used when the tokens/tags columns are absent).",
    )
    validation_split: float = Field(
        0.1, gt=0, lt=0.5, description="Share of train carved off for validation when no validation file is given."
    )
    max_train_samples: int | None = Field(
        None, gt=0, description="Use a seeded random sample of this many training rows."
    )
    samples_per_class: int | None = Field(
        None,
        gt=0,
        description="Few-shot: draw exactly this many seeded training examples per class (after any validation split).",
    )
    max_eval_samples: int | None = Field(
        None,
        gt=0,
        description="Generation: use a seeded sample of this many validation and test samples (evaluation costs "
        "a forward pass per token).",
    )
    min_examples_per_class: int = Field(
        2, ge=1, description="Refuse to train when a class has fewer training examples than this."
    )
    filter: dict[str, str | list[str]] | None = Field(
        None,
        description="Keep only rows whose column holds the value (or one of the values), in every file: "
        "e.g. {domain: books} or {label: [World, Sports]}.",
    )
    # generation (task: generation) only
    format: Literal["auto", "messages", "prompt_response", "alpaca", "text"] = Field(
        "auto", description="Generation data layout; 'auto' detects it from the columns and reports what it found."
    )
    messages_column: str = Field("messages", description="Column holding OpenAI-style chat message lists.")
    prompt_column: str | None = Field(
        None, description="Prompt column for prompt/response data (auto: prompt, question, input, query)."
    )
    response_column: str | None = Field(
        None, description="Response column for prompt/response data (auto: response, answer, output, completion)."
    )
    system_prompt: str | None = Field(None, description="System message added to every conversation that has none.")
    min_answer_support: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Generation: leave out training rows whose answer has under this share of its content words and "
        "numbers in its prompt (summaries that go beyond their source, as XSum's often do); validation and test "
        "files are kept whole.",
    )
    chosen_column: str = Field(
        "chosen", description="Preference pairs (method preference): column holding the answer wanted."
    )
    rejected_column: str = Field(
        "rejected", description="Preference pairs (method preference): column holding the answer not wanted."
    )

    @model_validator(mode="after")
    def _files_or_hub(self):
        if (self.train is None) == (self.hub is None):
            raise ValueError("give data.train (a file) or data.hub (a Hub dataset id), one of them")
        if self.hub is None and (self.config or self.revision or self.split_map):
            raise ValueError("data.config, data.revision and data.split_map go with data.hub")
        if self.hub and (self.validation or self.test):
            raise ValueError("with data.hub, the splits come from the dataset: name them in data.split_map")
        return self

    @model_validator(mode="before")
    @classmethod
    def _separator_means_multi_label(cls, raw):
        if isinstance(raw, dict) and raw.get("label_separator") and "multi_label" not in raw:
            raw = {**raw, "multi_label": True}
        return raw


class LoraSection(Strict):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: int = Field(16, gt=0, description="LoRA scaling alpha.")
    # 0 as in PEFT's LoraConfig: on a CPU the dropout mask cost ~30% of a LoRA step, for no measured gain
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the LoRA path (0: off, PEFT's default; docs/why-defaults.md)."
    )
    targets: list[str] | None = Field(
        None, description="Module names to adapt; default comes from the model registry (or 'all-linear')."
    )


class SupervisedMethod(Strict):
    name: Literal["supervised"] = "supervised"
    tuning: Literal["auto", "full", "lora"] = Field(
        "auto",
        description="'auto' = LoRA for decoder LLMs (or when a lora section is given), full fine-tuning for encoders.",
    )
    lora: LoraSection | None = Field(
        None, description="LoRA settings (rank, alpha, dropout, targets); giving this section turns LoRA on."
    )
    loss_on: Literal["responses", "all"] = Field(
        "responses", description="Generation: compute the loss on assistant/response tokens only, or on every token."
    )
    class_weights: Literal["none", "balanced"] | dict[str, float] = Field(
        "none", description="'balanced' weighs the loss by inverse class frequency; or a {label: weight} map."
    )
    freeze_embeddings: bool = Field(
        True,
        description="Keep the token-embedding matrix fixed (faster, and rare words seen in training do not drift).",
    )
    # 'auto' freezes the bottom third: lower layers hold general features that fine-tuning barely moves
    # (Lee et al. 2019, "What would Elsa do?"), and skipping their backward pass is the cheapest speed-up
    # on CPU. Measured: docs/why-defaults.md#frozen-layers.
    freeze_layers: int | Literal["auto"] = Field(
        "auto",
        description="Keep the bottom N transformer layers fixed (full fine-tuning only); 'auto' = a third of "
        "them, 0 = train all.",
    )
    label_all_subtokens: bool = Field(
        False,
        description="Token classification: a word split into several sub-tokens trains on every piece (True) or "
        "on its first piece only, the rest ignored in the loss (False, the usual choice).",
    )
    normalize_targets: bool = Field(
        True,
        description="Regression: train on standardised targets (mean 0, std 1); the saved model still outputs "
        "scores in the labels' own units.",
    )
    # 'auto': the rule and the figures behind it are in methods/head_init.py (probe_wanted).
    head_init: Literal["auto", "probe", "random"] = Field(
        "auto",
        description="Classification and entity tags: start a new head from a logistic regression on the frozen "
        "body's features (linear-probe-then-fine-tune; encoders) or from random numbers; 'auto' = probe for 4+ "
        "classes with under 25 optimizer steps per class, or 4+ tags with under 15 per tag. A continual run's "
        "first head follows it too. Regression: 'probe' starts the head as a ridge regression; 'auto' keeps it "
        "random (the ridge start scored lower on every set measured).",
    )


class FewShotMethod(Strict):
    name: Literal["few_shot"]
    pairs_per_example: int = Field(
        20,
        gt=0,
        description="Encoders: contrastive pairs per training example (half same-class, half different); "
        "the total grows linearly with the data, never quadratically.",
    )
    verbalizers: dict[str, str] | None = Field(
        None, description="Decoders: the text the LLM answers for each label (default: the label name itself)."
    )


class DomainAdaptationMethod(Strict):
    name: Literal["domain_adaptation"]
    corpus: list[str] = Field(
        default_factory=list,
        description="Unlabeled domain text (DAPT): .txt/.md files or folders of them (paragraphs = documents), "
        "or .jsonl/.csv/.tsv/.parquet files with a text column.",
    )
    text_column: str = Field("text", description="Column holding the text in tabular corpus files.")
    task_texts: bool = Field(
        False,
        description="TAPT: also train on the target task's training texts, labels dropped (data.train of the "
        "recipe or final stage).",
    )
    objective: Literal["auto", "mlm", "clm"] = Field(
        "auto",
        description="'auto' = masked-LM for encoders, causal LM for decoders. Text is packed into "
        "train.max_length blocks.",
    )
    mlm_probability: float = Field(
        0.15, gt=0, lt=1, description="Masked-LM: share of tokens masked (80% [MASK], 10% random, 10% kept)."
    )
    tuning: Literal["auto", "full", "lora"] = Field(
        "auto", description="'auto' = LoRA for decoders (or when a lora section is given), full for encoders."
    )
    lora: LoraSection | None = Field(None, description="LoRA settings when tuning is lora (decoders by default).")
    heldout_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Share of the domain documents held out to measure perplexity before and after."
    )
    max_tokens: int | None = Field(
        None,
        gt=0,
        description="Training budget: a seeded sample of documents holding at most this many tokens per epoch.",
    )
    heldout_max_blocks: int = Field(
        200, gt=0, description="Score perplexity on at most this many held-out blocks (seeded)."
    )
    head_warmup: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="When the checkpoint has no MLM head (sentence-embedding models), first train the new "
        "head alone on this share of the blocks, so its random start does not disturb the body.",
    )
    vocab_extension: int = Field(
        0,
        ge=0,
        description="Add up to this many frequent domain words that the tokenizer splits into many pieces; "
        "each new embedding starts as the mean of its old pieces.",
    )
    vocab_min_pieces: int = Field(
        3, ge=2, description="Vocabulary extension: only words split into at least this many pieces."
    )
    vocab_min_count: int = Field(
        20, ge=1, description="Vocabulary extension: only words seen at least this often in the corpus."
    )
    general_corpus: list[str] = Field(
        default_factory=list,
        description="General (non-domain) text mixed in to limit forgetting; same file kinds as corpus.",
    )
    general_ratio: float = Field(0.0, ge=0, lt=1, description="Share of training blocks drawn from general_corpus.")


class ContinualMethod(SupervisedMethod):
    name: Literal["continual"]
    strategy: list[Literal["naive", "replay", "ewc", "lwf"]] = Field(
        default_factory=lambda: ["replay"],
        description="How to keep old knowledge: naive (plain sequential fine-tuning, the "
        "reference), replay, ewc, lwf; strategies combine, e.g. [replay, ewc].",
    )
    replay_size: int = Field(
        1000, gt=0, description="replay: examples kept from past experiences (class-balanced reservoir)."
    )
    replay_ratio: float = Field(0.5, gt=0, description="replay: replayed examples mixed in per new training example.")
    ewc_lambda: float = Field(
        1e6,
        ge=0,
        description="ewc: strength of the pull towards weights that mattered before. The Fisher values of a "
        "fine-tuned transformer are tiny (a confident model has small gradients), hence the large "
        "default. Tune it on your data: with MiniLM, 1e7 stopped learning on review domains, 1e6 did "
        "not help with new classes, and one seed of three collapsed at 1e5 and 1e6. Prefer replay.",
    )
    ewc_samples: int = Field(
        100,
        gt=0,
        description="ewc: training examples used to estimate the diagonal Fisher information "
        "(one backward pass each: the cost of ewc).",
    )
    max_forgetting: float = Field(
        0.01,
        ge=0,
        description="Updates from feedback (`tunesmith update --from-feedback`, `tunesmith loop`): the most the "
        "score on the earlier experiences (the original test set among them) may drop for a new version to be "
        "promoted; 0.01 = 1 point.",
    )
    lwf_alpha: float = Field(1.0, ge=0, description="lwf: weight of distillation from the previous model's outputs.")
    lwf_temperature: float = Field(2.0, gt=0, description="lwf: softmax temperature of that distillation.")

    @model_validator(mode="before")
    @classmethod
    def _one_strategy(cls, raw):
        if isinstance(raw, dict) and isinstance(raw.get("strategy"), str):
            raw = {**raw, "strategy": [s.strip() for s in raw["strategy"].replace("+", ",").split(",")]}
        return raw


class PreferenceMethod(Strict):
    name: Literal["preference"]
    loss: Literal["dpo", "orpo"] = Field(
        "dpo",
        description="dpo: Direct Preference Optimization against the model as it started (the reference; its "
        "log-probabilities are computed once before training, so no second copy of the weights is held); orpo: "
        "odds-ratio preference optimization, SFT on the chosen answer plus a preference term, no reference.",
    )
    beta: float = Field(
        0.1,
        gt=0,
        le=10,
        description="dpo: how far the model may move from the reference (higher = stays closer); orpo: the weight "
        "of the preference term beside the SFT loss (TRL's beta for both).",
    )
    rejected_from: Literal["data", "model"] = Field(
        "data",
        description="data: pairs from files with prompt/chosen/rejected columns; model: from ordinary "
        "prompt/response (or chat) data, chosen = the data's answer, rejected = the starting model's own answer to "
        "the same prompt (for brand voice, where only the brand's copy exists).",
    )
    tuning: Literal["auto", "full", "lora"] = Field(
        "auto", description="'auto' = LoRA for decoders (or when a lora section is given), full otherwise."
    )
    lora: LoraSection | None = Field(None, description="LoRA settings when tuning is lora.")


def _method_tag(value) -> str | None:
    """`method.name` picks the method; a section without a name means supervised."""
    if isinstance(value, dict):
        return value.get("name", "supervised")
    return getattr(value, "name", None)


# A discriminated union on `method.name`; later methods join this Union with their Tag.
Method = Annotated[
    Union[
        Annotated[SupervisedMethod, Tag("supervised")],
        Annotated[FewShotMethod, Tag("few_shot")],
        Annotated[DomainAdaptationMethod, Tag("domain_adaptation")],
        Annotated[ContinualMethod, Tag("continual")],
        Annotated[PreferenceMethod, Tag("preference")],
    ],
    Discriminator(_method_tag),
]


class EarlyStopping(Strict):
    metric: Literal["accuracy", "f1_macro", "precision_macro", "recall_macro", "loss"] | None = Field(
        None,
        description="Validation metric that picks the epoch to keep (None = f1_macro for classification, loss "
        "for generation). "
        "Classification keeps the latest epoch unless an earlier one beat it by more than one standard error.",
    )
    patience: int | None = Field(
        2, ge=1, description="Stop after this many epochs without improvement (None = never stop early)."
    )
    min_epochs: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Patience never ends a run before this many epochs; 'auto' = half the planned epochs. A new head "
        "on a small set can score at chance for its first epochs before it learns.",
    )


AUTO_KEYS = ("lr", "batch_size", "epochs", "max_length")
AUTO = {"default": "auto"}  # what the schema shows for them: unset means chosen from the data, not the Python default


def _auto_means_unset(raw):
    """`lr: auto` (and batch_size, epochs) is the same as leaving the key out: tunesmith chooses from the data."""
    if isinstance(raw, dict):
        return {
            k: v for k, v in raw.items() if not (k in AUTO_KEYS and isinstance(v, str) and v.strip().lower() == "auto")
        }
    return raw


class TrainSection(Strict):
    _auto = model_validator(mode="before")(classmethod(lambda cls, raw: _auto_means_unset(raw)))
    lr: float | None = Field(
        None,
        gt=0,
        json_schema_extra=AUTO,
        description="Peak learning rate; unset or 'auto' = chosen from the method, model size "
        "and batch (printed at the start of the run, saved in recipe.yaml).",
    )
    batch_size: int = Field(
        32,
        gt=0,
        json_schema_extra=AUTO,
        description="Examples per optimizer step per process, before accumulation; unset or "
        "'auto' = 32, or 16/8 for small training sets.",
    )
    epochs: float = Field(
        3,
        gt=0,
        json_schema_extra=AUTO,
        description="Passes over the training data (fractions allowed); unset or 'auto' = 3, more "
        "for small sets (at least 250 optimizer steps), fewer for very large ones.",
    )
    max_steps: int | None = Field(
        None,
        gt=0,
        description="Stop after this many optimizer steps, whatever epochs says (the HF Trainer's max_steps): "
        "bounds the time of a run on a large file. The last epoch may be partial; validation runs at each "
        "epoch's end and once at the last step.",
    )
    memory_budget_gb: float | None = Field(
        None,
        gt=0,
        description="Memory the run may use; None = 70% of what is available at start. Batches that would not fit "
        "are split into micro-batches with gradient accumulation; a run that cannot fit is refused.",
    )
    gradient_checkpointing: Literal["auto"] | bool = Field(
        "auto",
        description="Recompute activations in the backward pass (decoders): 'auto' = only when the batch would not "
        "fit the memory budget otherwise.",
    )
    head_lr: float | None = Field(
        None,
        gt=0,
        description="Classification: learning rate of the new, randomly initialised head (None = train.lr). "
        "Many classes and few epochs want a higher one.",
    )
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of steps with linear learning-rate warmup.")
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear",
        description="The learning rate after warmup: 'linear' decays to 0 at the last step (the HF Trainer's "
        "default), 'cosine' along a half cosine to 0, 'constant' stays at train.lr.",
    )
    neftune_alpha: float | None = Field(
        None,
        gt=0,
        description="NEFTune: uniform noise on the input embeddings while training, scaled by this alpha over "
        "sqrt(sequence length x width), as TRL's and the HF Trainer's neftune_noise_alpha (5 in the paper, for "
        "chat tuning); unset = off. Evaluation and use see no noise.",
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    max_length: int = Field(
        256,
        gt=1,
        json_schema_extra=AUTO,
        description="Token limit per example; longer inputs are truncated and counted (generation samples lose "
        "the middle of their longest prompt message first, their answer's end last). Unset or "
        "'auto': 256, raised when over 5% of the training examples are longer, to their 95th percentile: "
        "texts for classification, multi-label and regression (up to the model's limit and 512); whole "
        "rendered samples, prompt and answer, for generation (up to the model's limit and 1,024).",
    )
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    group_by_length: bool = Field(
        True,
        description="Batch training examples of similar length (sorted inside small shuffled windows: "
        "less padding, faster); false = plain shuffled batches (HF Trainer's default). Unset: "
        "true, except generation with free-text answers (false).",
    )
    seed: int = Field(
        42,
        ge=0,
        le=2**32 - 1000,
        description="Seed for sampling, splits, initialisation and data order (0 to 2^32 - 1000; NumPy's range).",
    )
    seeds: int = Field(
        1, ge=1, description="Repeat the whole run over this many seeds (seed, seed+1, ...) and report mean ± std."
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="'auto' = bf16 where the hardware runs it fast (recent GPUs; CPUs with AMX, or with "
        "AVX512-BF16 where a bf16 block measured on the machine is 1.5x faster), else fp32.",
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="Override the model's dropout rate (None = the model's own)."
    )
    # 'auto' = 0 for token classification: a training step runs faster without it (PyTorch's fused attention
    # kernel needs attention dropout off), at the same entity F1 within noise (docs/why-defaults.md).
    attention_dropout: Annotated[float, Field(ge=0, lt=1)] | Literal["auto"] | None = Field(
        "auto",
        description="Dropout on attention probabilities (after train.dropout). 'auto' = 0 for token_classification, "
        "the model's own elsewhere; None = the model's own.",
    )
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm (None = off).")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    log_every: int = Field(10, ge=1, description="Write a training-log line every N optimizer steps.")
    distributed: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp",
        description="With several processes (--nproc N, torchrun, accelerate launch): ddp = data-parallel (gloo on "
        "CPUs, NCCL on GPUs); fsdp or deepspeed (ZeRO-2) shard the model on GPUs.",
    )
    data_check: Literal["stop", "warn", "off"] = Field(
        "stop",
        description="The data check before training (`tunesmith data check`): 'stop' on errors, 'warn' = report "
        "them, leave out the rows training cannot use (empty cells, evaluation labels training lacks, unreadable "
        "rows) and train on the rest, 'off' = skip it.",
    )
    save_steps: int | None = Field(
        500,
        ge=1,
        description="Write a resumable checkpoint every N optimizer steps (and at every epoch end); "
        "None = at epoch ends only. `tunesmith train --resume RUN_DIR` continues from it.",
    )
    packing: bool = Field(
        False, description="Generation: pack short samples into rows of max_length (no attention across samples)."
    )
    report_to: list[
        Literal["mlflow", "tensorboard", "wandb", "trackio", "aim", "comet_ml", "dvclive", "swanlab", "clearml"]
    ] = Field(
        default_factory=list,
        description="Experiment trackers to log to (Accelerate's trackers): the recipe as params, per-step loss, "
        "lr and throughput, validation per epoch, base and tuned metrics, report and plots as files. MLflow logs "
        "to MLFLOW_TRACKING_URI (MLflow's local store when unset); TensorBoard to RUN/tensorboard.",
    )
    run_name: str | None = Field(
        None, max_length=250, description="The run's name in the trackers (default: the run folder's name)."
    )
    experiment: str = Field(
        "tunesmith", min_length=1, max_length=250, description="Tracker experiment / project the run is logged under."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags set on the tracked run (name: value).")

    @field_validator("data_check", mode="before")
    @classmethod
    def _yaml_off(cls, value):
        """YAML 1.1 reads a bare `off` as false; the user meant the word."""
        return "off" if value is False else value


StopString = Annotated[str, Field(min_length=1, max_length=100)]


class DecodingSection(Strict):
    """How generated answers are decoded: held-out answers in evaluation, and the run's defaults for
    `tunesmith generate`, `chat` and `serve` (each may override them)."""

    repetition_penalty: float = Field(
        1.0,
        gt=0,
        le=2,
        description="Scales down the scores of tokens already in the prompt or answer (1 = off; 1.1-1.3 curbs "
        "the loops long answers fall into).",
    )
    no_repeat_ngram_size: int = Field(
        0,
        ge=0,
        le=10,
        strict=True,  # YAML's `yes` must not become a size of 1
        description="Never repeat a word-piece n-gram of this size within an answer (0 = off).",
    )
    stop: list[StopString] = Field(
        [], max_length=4, description="Strings that end an answer; the answer is cut before the first one."
    )
    num_beams: int = Field(
        1,
        ge=1,
        le=8,
        strict=True,
        description="Beam search: keep this many candidate answers at each step and return the most likely "
        "(1 = greedy, or sampling with temperature > 0). 4 is usual for summaries; generation costs about that "
        "many times more, and streamed answers arrive whole.",
    )
    length_penalty: float = Field(
        1.0,
        ge=-5,
        le=5,
        description="Beam search only: finished candidates are scored by log-likelihood / length**length_penalty; "
        "above 1 favours longer answers, below 1 shorter ones.",
    )

    @model_validator(mode="after")
    def _beams_for_length_penalty(self):
        if self.length_penalty != 1.0 and self.num_beams == 1:
            raise ValueError("length_penalty acts only in beam search: set num_beams to 2 or more, or leave it at 1")
        return self


class EvalSection(Strict):
    baseline: Literal["linear_probe", "none"] = Field(
        "linear_probe",
        description="Base-model comparison: a logistic regression on the frozen base model's embeddings (generation: "
        "the base model's own loss and answers); none skips it.",
    )
    batch_size: int = Field(64, gt=0, description="Batch size for evaluation and prediction.")
    max_samples: int | None = Field(
        100,
        ge=0,
        description="Generation: held-out prompts to generate answers for (base and tuned); None = all; 0 = none, "
        "the answer-token loss alone (what a sweep's trials do when the loss is what they are judged by).",
    )
    max_new_tokens: int | None = Field(
        None,
        gt=0,
        description="Generation: answer length limit (None = 1.5x the 95th-percentile training answer + 8 tokens, "
        "at most 256; 32 for label-like answers).",
    )
    generation_metric: Literal["auto", "exact_match", "rouge_l"] = Field(
        "auto", description="'auto' = exact match on parsed answers when references are short labels, else ROUGE-L."
    )
    metrics: list[Literal["rouge", "semantic_similarity", "length_ratio", "repetition", "faithfulness"]] = Field(
        [],
        description="Generation: more metrics on the answers, base and tuned alike: rouge (ROUGE-1/2/L, stemmed), "
        "semantic_similarity (cosine of mean-pooled MiniLM embeddings of answer and reference), length_ratio "
        "(answer words / reference words), repetition (share of repeated word 4-grams), faithfulness (share of "
        "the answer's content words and numbers found in its prompt, for summaries; unsupported numbers listed).",
    )
    style_reference: Literal["train"] | None = Field(
        None,
        description="Generation, brand voice: 'train' = judge whether answers read like the training responses. "
        "A logistic regression on MiniLM embeddings learns the training responses against the base model's "
        "answers to the same training prompts (up to 100); base and tuned get style_match (share of held-out "
        "answers it takes for the brand) and brand_ngrams (the brand's distinctive n-grams per answer).",
    )
    decoding: DecodingSection = Field(
        default_factory=DecodingSection,
        description="Generation: repetition_penalty, no_repeat_ngram_size, stop strings and beam search, for "
        "evaluation and as the run's defaults when it generates, chats or serves.",
    )


class OutputSection(Strict):
    dir: str | None = Field(
        None, description="Run directory (the CLI's -o wins). Relative paths resolve against the current directory."
    )
    overwrite: bool = Field(False, description="Allow writing into a run directory that already holds a run.")


class SweepRange(Strict):
    low: int | float = Field(description="Lowest value tried.")
    high: int | float = Field(description="Highest value tried.")
    log: bool = Field(False, description="Sample on a log scale (learning rates): low must be above 0.")

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low above 0")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


SweepChoices = Annotated[list[Union[bool, int, float, str]], Field(min_length=1)]
# keys a sweep may not vary: where the data lives and where runs go are the sweep's own business
NOT_SWEPT = ("sweep", "data.train", "data.validation", "data.test", "data.hub", "output", "stages", "experiences")


class SweepSection(Strict):
    trials: int = Field(12, ge=1, le=10_000, description="Trials to finish (`--trials` wins).")
    metric: str | None = Field(
        None,
        max_length=64,
        description="Validation metric to optimise (a key of the run's per-epoch validation metrics). Default: "
        "f1_macro for classification, f1 for entities, spearman for regression, loss for generation.",
    )
    params: dict[str, SweepRange | SweepChoices] = Field(
        default_factory=dict,
        description="Recipe keys to search, by dotted name: a range {low, high, log} (integers when both ends "
        "are) or a list of choices, e.g. {train.lr: {low: 1e-5, high: 1e-3, log: true}, method.lora.r: [8, 16]}. "
        "Empty: the default space for the task and tuning mode (docs/sweeps.md).",
    )
    pruning: bool = Field(
        True, description="Stop a trial after an epoch whose validation metric is below the median of earlier trials'."
    )

    @field_validator("params", mode="before")
    @classmethod
    def _each_space(cls, raw):
        """Clear messages per key before the union's: a range is a mapping, choices a non-empty list of values."""
        if not isinstance(raw, dict):
            return raw
        for key, space in raw.items():
            if isinstance(space, dict):
                try:
                    SweepRange.model_validate(space)
                except ValidationError as err:
                    problem = err.errors()[0]
                    where = ".".join(map(str, problem["loc"]))
                    raise ValueError(
                        f"'{key}'{f' {where}' if where else ''}: {problem['msg'].removeprefix('Value error, ')}"
                    ) from None
            elif isinstance(space, list):
                if not space:
                    raise ValueError(f"'{key}': an empty list of choices leaves nothing to try")
                if any(not isinstance(v, (bool, int, float, str)) for v in space):
                    raise ValueError(f"'{key}': choices are numbers, text or true/false")
            else:
                raise ValueError(f"'{key}': give a range {{low, high, log}} or a list of choices, not {space!r:.60}")
        return raw

    defaults_seeds: int = Field(
        3,
        ge=0,
        le=10,
        description="After the search: train the recipe as written with this many seeds, so the report can say "
        "whether the best trial's gain on the test set is larger than the defaults' seed-to-seed spread.",
    )


# A stage overrides only the train keys it names; the rest come from the recipe's train section.
StageTrain = create_model(
    "StageTrain",
    __base__=Strict,
    __validators__={"_auto": model_validator(mode="before")(classmethod(lambda cls, raw: _auto_means_unset(raw)))},
    **{
        name: (field.annotation | None, Field(None, description=field.description))
        for name, field in TrainSection.model_fields.items()
    },
)


class Stage(Strict):
    @model_validator(mode="before")
    @classmethod
    def _method_shorthand(cls, raw):
        if isinstance(raw, dict) and isinstance(raw.get("method"), str):
            raw = {**raw, "method": {"name": raw["method"]}}
        return raw

    name: str = Field(description="Short stage name (folder name under stages/ and row name in the report).")
    task: Literal["classification", "generation", "regression", "token_classification"] | None = Field(
        None, description="Default: the recipe's task."
    )
    data: DataSection | None = Field(
        None, description="This stage's data (default: the recipe's data section, the target task)."
    )
    method: Method | None = Field(None, description="This stage's method section (default: supervised).")
    train: StageTrain | None = Field(
        None, description="Train keys that differ from the recipe's train section for this stage."
    )


class Experience(Strict):
    name: str = Field(description="Short name (row and column name in the accuracy matrix).")
    data: DataSection = Field(
        description="This experience's data; its evaluation set is scored after every later experience."
    )


class Recipe(Strict):
    version: Literal[1] = Field(SCHEMA_VERSION, description="Recipe schema version.")
    task: Literal["classification", "generation", "regression", "token_classification"] = Field(
        "classification",
        description="classification (text -> label), regression (text -> number), token_classification "
        "(word -> entity tag: named entities) or generation (chat/instruction/text -> text).",
    )
    model: ModelSection
    data: DataSection | None = Field(
        None, description="The task's data; required unless every stage brings its own or method is domain_adaptation."
    )
    method: Method = Field(default_factory=SupervisedMethod)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    output: OutputSection = Field(default_factory=OutputSection)
    sweep: SweepSection | None = Field(
        None, description="Hyperparameter search (`tunesmith sweep`): what to vary and how the result is judged."
    )
    stages: list[Stage] | None = Field(
        None,
        min_length=1,
        description="Multi-stage run (transfer learning, domain adaptation): each stage starts from the "
        "previous stage's weights; the last stage is the target task.",
    )

    experiences: list[Experience] | None = Field(
        None,
        min_length=1,
        description="Continual learning (method continual): datasets arriving in order; each may bring new classes.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, raw):
        """`model: minilm-l6` and `method: few_shot` as plain strings; a continual recipe's top-level data
        holding only column names and options is shared by every experience (each experience's own keys win)."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        for key in ("model", "method"):
            if isinstance(raw.get(key), str):
                raw[key] = {"name": raw[key]}
        exps, data = raw.get("experiences"), raw.get("data")
        if isinstance(exps, list) and isinstance(data, dict) and "train" not in data:
            raw["experiences"] = [
                {**e, "data": {**data, **e["data"]}} if isinstance(e, dict) and isinstance(e.get("data"), dict) else e
                for e in exps
            ]
            raw.pop("data")
        return raw

    @model_validator(mode="after")
    def _regression_metric(self):
        if self.task in ("regression", "token_classification") and self.train.early_stopping.metric not in (
            None,
            "loss",
        ):
            raise ValueError(
                f"train.early_stopping.metric: {self.train.early_stopping.metric} is a sentence-classification "
                f"metric; {self.task} runs pick the best epoch by their own (leave it unset, or loss)"
            )
        return self

    @model_validator(mode="after")
    def _sweep_keys(self):
        """Every swept key is a recipe key, and every value it may take makes a valid recipe."""
        if not self.sweep or not self.sweep.params:
            return self
        if self.stages or self.experiences:
            raise ValueError("sweep: searches single runs; a staged or continual recipe has no one run to tune")
        known = set(_all_paths(Recipe))
        raw = self.model_dump(mode="json", exclude_unset=True, exclude={"sweep"})
        for key, space in self.sweep.params.items():
            if key not in known:
                raise ValueError(f"sweep.params: '{key}' is not a recipe key.{_suggest_key(key, known)}")
            if any(key == k or key.startswith(k + ".") for k in NOT_SWEPT):
                raise ValueError(f"sweep.params: '{key}' cannot be searched (the sweep owns the data and the outputs)")
            values = [space.low, space.high] if isinstance(space, SweepRange) else space
            for value in values:
                try:
                    Recipe.model_validate(set_dotted(copy.deepcopy(raw), key, value))
                except ValidationError as err:
                    problem = err.errors()[0]
                    raise ValueError(f"sweep.params.{key}: {value!r} is not a valid value: {problem['msg']}") from None
        return self

    @model_validator(mode="after")
    def _answer_support_generates(self):
        parts = [(self.data, self.task, self.method)]
        parts += [(s.data or self.data, s.task or self.task, s.method or self.method) for s in self.stages or []]
        for data, task, method in parts:
            if data is None or not data.min_answer_support:
                continue
            if task != "generation":
                raise ValueError(
                    "data.min_answer_support: measures answers against their prompts; it needs task: generation"
                )
            if isinstance(method, PreferenceMethod) and method.rejected_from == "data":
                raise ValueError(
                    "data.min_answer_support: preference pairs from a file are kept whole (which side would it "
                    "measure?); filter the file, or leave it unset"
                )
        return self

    @model_validator(mode="after")
    def _preference_generates(self):
        tasks = [(self.method, self.task)] + [(s.method, s.task or self.task) for s in self.stages or []]
        if any(isinstance(m, PreferenceMethod) and t != "generation" for m, t in tasks):
            raise ValueError("method preference trains decoders that answer prompts: it needs task: generation")
        noisy = [(self.method, self.train.neftune_alpha)]
        noisy += [
            (s.method, getattr(s.train, "neftune_alpha", None) or self.train.neftune_alpha) for s in self.stages or []
        ]
        if any(isinstance(m, PreferenceMethod) and alpha for m, alpha in noisy):
            raise ValueError(
                "train.neftune_alpha: noise on the embeddings is for supervised tuning; under method preference the "
                "reference model's answers would be scored through the same noise. Set it on the SFT stage alone."
            )
        if any(isinstance(m, PreferenceMethod) for m, _ in tasks) and self.eval.max_samples == 0:
            raise ValueError(
                "eval.max_samples: 0 (no answers) does not suit method preference: its held-out pairs are the "
                "base model's answers to the evaluation prompts. Leave it unset, or give a number of prompts."
            )
        return self

    @model_validator(mode="after")
    def _data_present(self):
        if self.experiences and not isinstance(self.method, ContinualMethod):
            raise ValueError("experiences: needs method.name: continual")
        if self.experiences:
            return self
        if self.stages:
            missing = [
                s.name
                for s in self.stages
                if s.data is None and self.data is None and not isinstance(s.method, DomainAdaptationMethod)
            ]
            if missing:
                raise ValueError(
                    f"stage(s) {missing} have no data section and the recipe has none to inherit; add data: to them"
                )
        elif self.data is None and not isinstance(self.method, DomainAdaptationMethod):
            raise ValueError("missing required key 'data' (the training file and its columns)")
        return self


def task_kind(recipe) -> str:
    """What the registry and the data check dispatch on: the task, with classification on data.multi_label as
    its own kind (sigmoid head, thresholds)."""
    data = recipe.data if recipe.data is not None else (recipe.experiences or [None])[0]
    data = getattr(data, "data", data)  # a continual recipe without top-level data: its first experience's
    multi = recipe.task == "classification" and data is not None and data.multi_label
    return "multi_label" if multi else recipe.task


# ---------------------------------------------------------------- loading


def load_recipe(source: str | Path | dict | Recipe, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe (YAML path, dict or Recipe), apply `a.b=c` overrides, validate, resolve paths."""
    if isinstance(source, Recipe):
        # only what was set: methods pick their own defaults for unset keys (few_shot: 1 epoch, batch 16)
        raw, base_dir, where = source.model_dump(mode="json", exclude_unset=True), Path.cwd(), "recipe"
    elif isinstance(source, dict):
        raw, base_dir, where = source, Path.cwd(), "recipe"
    elif not isinstance(source, (str, Path)):
        raise TunesmithError(
            f"recipe: give a YAML file's path, a dict or a tunesmith.Recipe, not {type(source).__name__}."
        )
    else:
        path = Path(source)
        raw, base_dir, where = _read_yaml(path), path.resolve().parent, str(path)
    raw = dict(raw)
    for item in overrides:
        _apply_override(raw, item)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise TunesmithError(format_validation_error(err, where)) from None
    return _resolve_paths(recipe, base_dir)


MAX_RECIPE_BYTES = 1_000_000  # a recipe is a page of YAML; more is a wrong path (a data file, /dev/zero)


# what a user may pass where the recipe goes; a .json recipe is allowed (JSON is YAML)
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet", ".xlsx", ".xls", ".conll", ".iob", ".bio")


def _read_yaml(path: Path) -> dict:
    if path.is_dir():
        raise TunesmithError(f"{path} is a folder; pass the recipe's YAML file (e.g. {path}/recipe.yaml).")
    if not path.exists():
        raise TunesmithError(f"Recipe file not found: {path}. Check the path, or list shipped recipes in recipes/.")
    if not path.is_file():
        raise TunesmithError(f"{path} is not a regular file (a device, pipe or socket); pass the recipe's YAML file.")
    if path.suffix.lower() in DATA_SUFFIXES:
        raise TunesmithError(
            f"{path} is a data file, not a recipe. A recipe is a YAML file that names it (data.train: {path.name}); "
            "`tunesmith recipes list` shows ready ones to copy, and `tunesmith data check` reads a data file alone."
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RECIPE_BYTES + 1)
        if len(data) > MAX_RECIPE_BYTES:
            raise TunesmithError(
                f"{path} is over {MAX_RECIPE_BYTES:,} bytes: not a recipe. Pass the recipe's YAML file."
            )
        raw = yaml.safe_load(data.decode("utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise TunesmithError(
            f"{path}: invalid YAML{line}: {problem}. Fix the syntax there (indentation, colons, quotes)."
        ) from None
    except UnicodeDecodeError:
        raise TunesmithError(f"{path}: not UTF-8 text. Save the recipe as UTF-8 YAML.") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise TunesmithError(f"{path}: YAML nested too deeply to be a recipe.") from None
    if not isinstance(raw, dict):
        raise TunesmithError(f"{path}: a recipe must be a YAML mapping (key: value lines), got {type(raw).__name__}.")
    return raw


def _suggest_key(key: str, known: set[str]) -> str:
    """A dotted key's nearest recipe key: the schema's own hint (train.lora_r lives at method.lora.r), else the
    closest spelling."""
    hint = _suggest(tuple(key.split(".")))
    if "." in hint:
        return hint
    return did_you_mean(key, sorted(k for k in known if not k.startswith(("stages.", "experiences."))))


def set_dotted(raw: dict, key: str, value) -> dict:
    """`raw` (a recipe as a dict) with the dotted `key` set to `value`; sections on the way are created."""
    keys = key.split(".")
    for section in ("model", "method"):  # `method: few_shot` shorthand
        if len(keys) > 1 and keys[0] == section and isinstance(raw.get(section), str):
            raw[section] = {"name": raw[section]}
    node = raw
    for part in keys[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[keys[-1]] = value
    return raw


def _apply_override(raw: dict, item: str) -> None:
    dotted, value = item.split("=", 1) if "=" in item else (item, None)
    item = item if len(item) <= 120 else item[:100] + " ..."  # as errors name it: a pasted document stays out
    if value is None:
        raise TunesmithError(f"Override '{item}' must look like section.key=value, e.g. train.lr=3e-5.")
    keys = dotted.strip().split(".")
    node = raw
    for key in keys[:-1]:
        node = _override_child(node, key, item)
    last = _list_index(node, keys[-1], item) if isinstance(node, list) else keys[-1]
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
        # '|' and '>' open YAML block scalars and read as '': on a command line they mean the characters themselves
        node[last] = value.strip() if parsed == "" and value.strip() else parsed
    except (yaml.YAMLError, RecursionError) as err:
        problem = "nested too deeply" if isinstance(err, RecursionError) else getattr(err, "problem", None)
        problem = problem or type(err).__name__
        raise TunesmithError(
            f"Override '{item}': the value is not valid YAML ({problem}). Quote it as a string, "
            f"e.g. --set '{dotted.strip()}=\"...\"'."
        ) from None


def _override_child(node, key: str, item: str):
    """The section (or list: `stages.1.train.lr`) that `key` names under `node`; a missing one is made."""
    if isinstance(node, list):
        return node[_list_index(node, key, item)]
    child = node.setdefault(key, {})
    if isinstance(child, str) and key in ("model", "method"):  # `model: minilm-l6` shorthand: model.name=... applies
        child = node[key] = {"name": child}
    if not isinstance(child, dict | list):
        raise TunesmithError(f"Override '{item}': '{key}' is not a section.")
    return child


def _list_index(node: list, key: str, item: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise TunesmithError(
            f"Override '{item}': '{key}' is not a position in that list; it has {len(node)} item(s), "
            f"0 to {len(node) - 1}."
        )
    return int(key)


def is_inline_or_named(template: str) -> bool:
    """model.chat_template names a template ('auto', 'chatml') or holds its Jinja text, rather than a file."""
    return template in ("auto", "chatml") or "{" in template


def with_absolute_paths(recipe: Recipe) -> Recipe:
    """A validated Recipe object as a run uses it: a copy whose relative paths name files under the current folder."""
    return _resolve_paths(recipe.model_copy(deep=True), Path.cwd())


def _resolve_paths(recipe: Recipe, base_dir: Path) -> Recipe:
    roots = data_roots()

    def resolve(p):
        """Against the recipe's folder; a path not there but under a data root is read from the first root that
        holds it (shipped recipes name their data relative to one). abspath, not resolve(): a symlink loop must
        reach the reader's clear message."""
        if p is None or Path(p).is_absolute():
            return p
        near = base_dir / p
        found = next((root / p for root in roots if (root / p).exists()), None) if not near.exists() else None
        return os.path.abspath(found if found is not None else near)

    for data in (
        [recipe.data] + [stage.data for stage in recipe.stages or []] + [e.data for e in recipe.experiences or []]
    ):
        if data is not None:
            data.train, data.validation, data.test = resolve(data.train), resolve(data.validation), resolve(data.test)
    for method in [recipe.method] + [stage.method for stage in recipe.stages or []]:
        if isinstance(method, DomainAdaptationMethod):
            method.corpus = [resolve(p) for p in method.corpus]
            method.general_corpus = [resolve(p) for p in method.general_corpus]
    if not is_inline_or_named(recipe.model.chat_template):  # a template file, found as data files are
        recipe.model.chat_template = resolve(recipe.model.chat_template)
    local_model = base_dir / recipe.model.name
    if recipe.model.name.startswith(".") or local_model.is_dir():
        recipe.model.name = os.path.abspath(local_model)
    return recipe


# ---------------------------------------------------------------- error messages


def format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"{where}: the recipe does not match the schema (version {SCHEMA_VERSION}):"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not isinstance(p, int))
        shown = loc[:1] + loc[2:] if loc[:1] == ("method",) and len(loc) > 1 and loc[1] in _METHOD_NAMES else loc
        dotted = ".".join(map(str, shown))  # the union tag in loc is noise to users
        if e["type"] == "union_tag_invalid":
            tag, expected = e["ctx"]["tag"], sorted(_METHOD_NAMES)
            lines.append(
                f"  - {'.'.join(map(str, loc)) or 'method'}.name: unknown method '{tag}'. Methods: "
                f"{', '.join(expected)}.{did_you_mean(tag, expected)}"
            )
        elif e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{dotted}'.{_suggest(loc)}")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key '{dotted}'.")
        elif not dotted:
            lines.append(_sentence(f"  - {e['msg'].removeprefix('Value error, ')}"))
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict) else ""
            lines.append(_sentence(f"  - {dotted}: {e['msg'].removeprefix('Value error, ')}{shown}"))
    lines.append("See `tunesmith recipe schema` for every key and its meaning.")
    return "\n".join(lines)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _suggest(loc: tuple) -> str:
    key = loc[-1]
    if key in RENAMED:
        return f" It is called '{RENAMED[key]}' in tunesmith recipes."
    flat = lambda path: path.replace(".", "_")  # noqa: E731  (train.lora_r -> method.lora.r)
    elsewhere = [
        path
        for path in _all_paths(Recipe)
        if "_" in str(key) and flat(path).endswith("_" + str(key)) and not path.startswith("stages.")
    ]
    if elsewhere:
        return f" Did you mean '{min(elsewhere, key=len)}'?"
    model = _model_at(loc[:-1])
    return did_you_mean(key, model.model_fields) if model else ""


def _all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of the schema (through method unions), for "it lives over there" hints."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        for sub in _submodels(field.annotation):
            if sub is not model and not prefix.count(".") > 3:
                out += _all_paths(sub, path + ".")
    return list(dict.fromkeys(out))


def _submodels(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    from typing import get_args

    return [m for arg in get_args(annotation) for m in _submodels(arg)]


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema class holding the keys at `loc` (following discriminated unions by tag)."""
    candidates: list[type[BaseModel]] = [Recipe]
    for part in loc:
        if len(candidates) > 1:
            candidates = [c for c in candidates if c.model_fields.get("name") and _method_name(c) == part]
            continue
        field = candidates[0].model_fields.get(part) if candidates else None
        if field is None:
            return None
        candidates = _submodels(field.annotation)
    return candidates[0] if len(candidates) == 1 else None


def _method_name(model: type[BaseModel]) -> str:
    from typing import get_args

    return get_args(model.model_fields["name"].annotation)[0]  # name: Literal["few_shot"]


_METHOD_NAMES = {_method_name(m) for m in _submodels(Method)}


def json_schema() -> dict:
    return Recipe.model_json_schema()


def dotted(tree: dict, prefix: str = "") -> dict:
    """A recipe (or any nested mapping) as dotted keys -> values: {"train": {"lr": 1e-3}} -> {"train.lr": 1e-3};
    lists stay whole, an empty mapping gives no key."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(dotted(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return out


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def stage_recipe(recipe: Recipe, index: int, model_name: str | None = None) -> Recipe:
    """Stage `index` as a complete single-stage recipe: the recipe's sections with the stage's own on top.

    A stage without a method takes the recipe's method; its train keys override the recipe's one by one
    (a null key means "not set here", so a dumped and reloaded recipe means the same).
    """
    stage = recipe.stages[index]
    # unset keys stay unset, so a stage's method can still apply its own defaults (few_shot: 1 epoch)
    raw = recipe.model_dump(mode="json", exclude={"stages"}, exclude_unset=True)
    if stage.task:
        raw["task"] = stage.task
    if stage.data:
        raw["data"] = stage.data.model_dump(mode="json")
    if stage.method:
        raw["method"] = stage.method.model_dump(mode="json")
    if stage.train:
        raw.setdefault("train", {}).update(stage.train.model_dump(mode="json", exclude_unset=True, exclude_none=True))
    if model_name:
        raw["model"]["name"] = model_name
    return Recipe.model_validate(raw)
