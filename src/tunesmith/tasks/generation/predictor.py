"""Use a finished generation run: load (adapter merged in memory), generate, stream a chat, export."""

from __future__ import annotations

from pathlib import Path

from ...errors import TunesmithError
from ...runs import rundir as runs
from .formatting import with_default_system
from .generate import cut_at_stop, generate

DEFAULT_MAX_NEW = 256  # new tokens per answer where neither the caller nor the run's recipe sets a limit


def load_generation_model(run_dir: Path):
    """(model, tokenizer) from a run: merged/ or model/ when present, else base weights + adapter/."""
    from ...models.loading import load_causal_lm

    folder = _saved_folder(run_dir)
    if folder.name != runs.ADAPTER_DIR:
        return runs.load_saved_model(folder, load_causal_lm), _run_tokenizer(run_dir)
    try:
        return _merge(run_dir, folder), _run_tokenizer(run_dir)
    except TunesmithError:
        raise
    except Exception as err:  # noqa: BLE001
        raise TunesmithError(
            f"{folder}: the run's LoRA adapter cannot be loaded ({type(err).__name__}); the folder is "
            "damaged or was changed after training. Train the run again, or restore it from a copy."
        ) from None


def _saved_folder(run_dir: Path) -> Path:
    """Where the run keeps its model: merged/ or model/ (a full model), else adapter/ (LoRA)."""
    for folder in (runs.MERGED_DIR, runs.MODEL_DIR):
        if (run_dir / folder / "config.json").is_file():
            return run_dir / folder
    adapter = run_dir / runs.ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise TunesmithError(f"{run_dir}: no model/, merged/ or adapter/ folder with weights; was the run completed?")
    return adapter


def _merge(run_dir: Path, adapter: Path):
    from peft import PeftModel

    from ...models.loading import load_causal_lm, resolve_weights

    recipe = runs.read_yaml(run_dir / runs.RECIPE_FILE)
    base = load_causal_lm(resolve_weights(recipe["model"]["name"]))
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def load_base_predictor(run_dir: Path, **kwargs) -> GenerativePredictor:
    """The model the run started from, as a predictor that answers and scores as the run's does (its recipe, its
    answer cap, its style judge): what the tuned model is compared against by hand."""
    from ...models.loading import load_causal_lm, resolve_weights

    weights = resolve_weights(runs.read_yaml(run_dir / runs.RECIPE_FILE)["model"]["name"])
    return run_predictor(run_dir, load_causal_lm(weights), _run_tokenizer(run_dir), **kwargs)


def _run_tokenizer(run_dir: Path):
    """The tokenizer the run saved beside its model: the base model's, with the chat template training rendered
    samples with (the base model may have none, or the recipe chose another)."""
    from ...models.loading import load_tokenizer

    folder = _saved_folder(run_dir)
    if folder.name == runs.ADAPTER_DIR:
        return load_tokenizer(str(folder))
    return runs.load_saved_model(folder, load_tokenizer)


def run_predictor(run_dir: Path, model, tokenizer, **kwargs) -> GenerativePredictor:
    """A predictor of `model` with what the run recorded: its recipe (decoding, system prompt, metrics), the
    training answers' length (the evaluation's answer cap) and the style judge a brand-voice run built."""
    from ...recipe import load_recipe, stage_recipe

    recipe = load_recipe(runs.read_yaml(run_dir / runs.RECIPE_FILE))
    if recipe.stages:  # the model is the last stage's: its data section (system prompt) and settings hold
        recipe = stage_recipe(recipe, len(recipe.stages) - 1)
    data = runs.read_json(run_dir / runs.METRICS_FILE).get("data")
    p95 = data.get("answer_p95") if isinstance(data, dict) else None
    p95 = p95 if isinstance(p95, int) and not isinstance(p95, bool) and 0 < p95 < 10**6 else None  # a file: input
    predictor = GenerativePredictor(model, tokenizer, recipe=recipe, answer_p95=p95, **kwargs)
    predictor.style_judge = _saved_style_judge(run_dir)
    return predictor


def _saved_style_judge(run_dir: Path):
    """The style judge a brand-voice run saved, or None; a file that is not one is an error, never code."""
    from .style import FILE, StyleJudge
    from .text_metrics import embedding_width

    path = run_dir / FILE
    if not path.is_file():
        return None
    try:
        return StyleJudge.from_json(runs.read_json(path), embedding_width())
    except ValueError as err:
        raise TunesmithError(f"{run_dir}: {err}") from None


class GenerativePredictor:
    """`generate(prompts)` for prompts as strings (one user turn each) or OpenAI-style message lists."""

    def __init__(
        self, model, tokenizer, max_new_tokens: int | None = None, batch_size: int = 16, recipe=None, answer_p95=None
    ):
        from ...recipe import DecodingSection

        self.model, self.tokenizer = model.eval(), tokenizer
        self.answer_p95 = (
            answer_p95  # the training answers' length: `evaluate` caps answers as the run's evaluation did
        )
        # the answer length a recipe set (eval.max_new_tokens) stays the run's default, as its decoding settings do
        limit = recipe.eval.max_new_tokens if recipe is not None else None
        self.max_new_tokens, self.batch_size = max_new_tokens or limit or DEFAULT_MAX_NEW, batch_size
        self.recipe = recipe  # the run's recipe: how `evaluate` reads a file and scores answers, as in training
        self.style_judge = None  # eval.style_reference runs: set from the run's style_judge.json by run_predictor
        # the run's decoding settings (eval.decoding) are the defaults of every answer it gives
        self.decoding = recipe.eval.decoding if recipe is not None else DecodingSection()
        # training put data.system_prompt before every conversation without a system turn; the template now does
        # so for every prompt rendered here (generate, chat, serve, and the exports, which save this tokenizer)
        self.system_prompt = recipe.data.system_prompt if recipe is not None and recipe.data is not None else None
        with_default_system(tokenizer, self.system_prompt)

    def decoding_with(self, overrides: dict | None):
        """The run's decoding settings with the caller's (None values keep the run's), checked as a recipe is."""
        from pydantic import ValidationError

        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if not given:
            return self.decoding
        if given.get("num_beams") == 1:  # beams turned off: the run's length_penalty goes with them
            given.setdefault("length_penalty", 1.0)
        try:
            return type(self.decoding).model_validate({**self.decoding.model_dump(), **given})
        except ValidationError as err:
            first = err.errors()[0]
            if not first["loc"]:  # settings that contradict each other: the message names them
                raise TunesmithError(f"decoding: {first['msg'].removeprefix('Value error, ')}.") from None
            where = ".".join(str(p) for p in first["loc"])
            raise TunesmithError(f"{where}: {first['msg']} (got {first.get('input')!r}).") from None

    def evaluate(self, path: str | Path, max_samples: int | None = None) -> dict:
        """Loss/perplexity on every sample of the file, generation metrics on its prompts (the run's eval settings)."""
        from ...data.conversations import read_conversations
        from .generate import split_prompt, validation_loss
        from .metrics import answer_settings, generation_metrics
        from .token_rows import encode_rows, learnable_rows

        recipe = self.recipe
        pairs = self._pairs(path)
        if pairs is not None:  # a preference run on prompt/chosen/rejected: the chosen answer is the reference
            from ...data.conversations import Conversations

            samples = [[*p.prompt, {"role": "assistant", "content": p.chosen}] for p in pairs]
            conv = Conversations(samples, "messages", str(path))
        else:
            conv = read_conversations(str(path), recipe.data, "--data")
        loss_on = getattr(recipe.method, "loss_on", "responses")  # preference runs learn from answers only
        # memory-mapped token rows, as training's: a large file is not held as lists of token ids
        rows = learnable_rows(encode_rows(self.tokenizer, conv.samples, recipe.train.max_length, loss_on))
        metrics = validation_loss(self.model, rows, recipe.eval.batch_size, self.tokenizer.pad_token_id)
        if pairs is not None:
            metrics["preference_accuracy"] = self._preference_accuracy(pairs)
        limit = max_samples if max_samples is not None else recipe.eval.max_samples
        if conv.format == "text" or limit == 0:
            return metrics
        pairs = [split_prompt(s) for s in (conv.samples if limit is None else conv.samples[:limit])]
        references = [r for _, r in pairs]
        kind, max_new = answer_settings(recipe.eval, references, self.answer_p95)
        prompts = [p for p, _ in pairs]
        answers = self.generate(prompts, max_new)  # the run's decoding settings, as in training's evaluation
        scored = generation_metrics(answers, references, kind, recipe.eval.metrics, prompts=prompts)
        if self.style_judge is not None:  # a brand-voice run: the judge it built scores these answers too
            scored.update(self.style_judge.score(answers))
        return {**metrics, **scored, "generated": len(answers)}

    def _pairs(self, path) -> list | None:
        """The file's preference pairs when this is a preference run and the file has chosen/rejected columns."""
        from ...data.preference import read_pairs
        from ...data.readers import read_table

        data = self.recipe.data
        if self.recipe.method.name != "preference":
            return None
        columns = set(map(str, read_table(path, "--data").columns))
        if not {data.chosen_column, data.rejected_column} <= columns:
            return None
        return read_pairs(str(path), data, "--data").pairs

    def _preference_accuracy(self, pairs: list) -> float:
        """Share of pairs whose chosen answer the model finds more likely per token (needs no reference model)."""
        from .preference import PairRows, encode_pair, pair_metrics

        cut = self.recipe.train.max_length
        encoded = (encode_pair(self.tokenizer, p.prompt, p.chosen, p.rejected, cut) for p in pairs)
        rows = PairRows(row for row, _, ok in encoded if ok)
        scored = pair_metrics(self.model, rows, self.recipe.eval.batch_size, self.tokenizer.pad_token_id, "orpo", 0.1)
        return scored["preference_accuracy"]

    def generate(
        self,
        prompts: list,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        decoding: dict | None = None,
    ) -> list[str]:
        """`decoding`: overrides of the run's eval.decoding ({"repetition_penalty": 1.2, "stop": ["###"]})."""
        single = isinstance(prompts, str) or (
            isinstance(prompts, list) and bool(prompts) and isinstance(prompts[0], dict)
        )
        batch = [prompts] if single else checked_prompts(prompts)
        if single:
            checked_prompts(batch)
        max_new = checked_settings(
            self.max_new_tokens if max_new_tokens is None else max_new_tokens, temperature, top_p
        )
        settings = self.decoding_with(decoding)
        answers = (
            generate(self.model, self.tokenizer, batch, max_new, self.batch_size, temperature, top_p, None, settings)
            if batch
            else []
        )
        return answers[0] if single else answers

    def stream(
        self,
        messages: list[dict],
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        decoding: dict | None = None,
    ):
        """Yield the answer to one conversation piece by piece as it is generated, ending before a stop string."""
        from threading import Thread

        from transformers import TextIteratorStreamer

        checked_prompts([messages])
        max_new_tokens = checked_settings(
            self.max_new_tokens if max_new_tokens is None else max_new_tokens, temperature, top_p
        )
        settings = self.decoding_with(decoding)
        if settings.num_beams > 1:  # beam search knows its answer only at the end: it comes whole
            yield self._whole(messages, max_new_tokens or self.max_new_tokens, temperature, top_p, settings)
            return
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failed: list[BaseException] = []

        def work():
            try:
                generate(
                    self.model,
                    self.tokenizer,
                    [messages],
                    max_new_tokens or self.max_new_tokens,
                    1,
                    temperature,
                    top_p,
                    streamer,
                    settings,
                )
            except BaseException as exc:  # noqa: BLE001  (reported below, in the caller's thread)
                failed.append(exc)
                streamer.end()  # the reader waits for this: without it a failed generation hangs the chat forever

        worker = Thread(target=work, daemon=True)
        worker.start()
        yield from until_stop(streamer, list(settings.stop))
        worker.join()
        if failed:
            raise TunesmithError(f"generation failed ({type(failed[0]).__name__}: {failed[0]}); the turn was dropped.")

    def _whole(self, messages: list[dict], max_new_tokens: int, temperature: float, top_p: float, settings) -> str:
        try:
            return generate(
                self.model, self.tokenizer, [messages], max_new_tokens, 1, temperature, top_p, None, settings
            )[0]
        except Exception as exc:  # noqa: BLE001  (as a streamed turn's failure reads)
            raise TunesmithError(f"generation failed ({type(exc).__name__}: {exc}); the turn was dropped.") from None


def until_stop(pieces, stops: list[str]):
    """The streamed pieces up to the first stop string. The text that could still be the start of one is held
    back until the next piece shows it is not; the rest of the stream is drained (the generation ends itself)."""
    if not stops:
        yield from pieces
        return
    hold = max(len(s) for s in stops) - 1
    text, sent, stopped = "", 0, False
    for piece in pieces:
        if stopped:
            continue
        text += piece
        cut, stopped = cut_at_stop(text, stops)
        end = len(cut) if stopped else max(sent, len(text) - hold)
        if end > sent:
            yield text[sent:end]
            sent = end
    if not stopped and len(text) > sent:
        yield text[sent:]


def checked_prompts(prompts) -> list:
    """Prompts as strings or OpenAI-style message lists; anything else is a message naming the item."""
    from ...data.inputs import text_list

    if prompts is None or isinstance(prompts, (dict, bytes)) or not hasattr(prompts, "__iter__"):
        raise TunesmithError(
            f"prompts: give a string, a list of messages, or a list of those; not {type(prompts).__name__}."
        )
    prompts = list(prompts)
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            text_list(prompt, f"prompts[{i}]")
            continue
        if (
            not isinstance(prompt, list)
            or not prompt
            or not all(
                isinstance(m, dict)
                and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)
                for m in prompt
            )
        ):
            raise TunesmithError(
                f"prompts[{i}]: give a string, or a list of {{'role': 'system'|'user'|'assistant', 'content': str}} "
                f"messages; got {str(prompt)[:60]!r}."
            )
        text_list([m["content"] for m in prompt], f"prompts[{i}] contents")
    return prompts


def checked_settings(max_new_tokens, temperature, top_p) -> int:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise TunesmithError(f"max_new_tokens must be a whole number of at least 1, not {max_new_tokens!r}.")
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise TunesmithError(f"temperature must be between 0 (greedy) and 2, not {temperature!r}.")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise TunesmithError(f"top_p must be above 0 and at most 1, not {top_p!r}.")
    return max_new_tokens


def export_merged(run_dir: Path, target: Path | None) -> Path:
    """A plain Hugging Face model folder (adapter merged) that loads without tunesmith or peft."""
    target = target or run_dir / runs.MERGED_DIR
    model, tokenizer = load_generation_model(run_dir)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
