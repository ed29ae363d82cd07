"""`tunesmith chat`, `generate` and `export`: commands for generation runs (registered on the main app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import TunesmithError
from .app import Overwrite, app, err, friendly, out

Temperature = Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy (deterministic).")]
TopP = Annotated[
    float, typer.Option("--top-p", help="Nucleus sampling: keep the smallest token set with this much probability.")
]
MaxNew = Annotated[
    Optional[int],
    typer.Option(
        "--max-new-tokens", help="Answer length limit in tokens; default: the run's eval.max_new_tokens, or 256."
    ),
]
RepetitionPenalty = Annotated[
    Optional[float],
    typer.Option(help="Scale down tokens already written (1 = off, 1.1-1.3 curbs loops); default: the run's."),
]
NoRepeat = Annotated[
    Optional[int], typer.Option(help="Never repeat an n-gram of this many tokens (0 = off); default: the run's.")
]
Stop = Annotated[
    Optional[list[str]],
    typer.Option("--stop", help="A string that ends an answer (repeatable, up to 4); default: the run's."),
]

NumBeams = Annotated[
    Optional[int],
    typer.Option(
        help="Beam search: candidates kept per step (1 = greedy; 4 is usual for summaries); default: the run's."
    ),
]
LengthPenalty = Annotated[
    Optional[float],
    typer.Option(help="Beam search only: above 1 favours longer answers, below 1 shorter; default: the run's."),
]


def _decoding(repetition_penalty, no_repeat_ngram_size, stop, num_beams=None, length_penalty=None) -> dict:
    """The run's eval.decoding, overridden by what was given on the command line."""
    return {
        "repetition_penalty": repetition_penalty,
        "no_repeat_ngram_size": no_repeat_ngram_size,
        "stop": stop,
        "num_beams": num_beams,
        "length_penalty": length_penalty,
    }


def _generator(run_dir: Path):
    from ..predict import Predictor, run_task

    if run_task(run_dir) != "generation":
        raise TunesmithError(f"{run_dir} is a classification run; use `tunesmith predict` with it.")
    return Predictor.load(run_dir)


@app.command()
@friendly
def chat(
    run_dir: Annotated[Path, typer.Argument(help="A finished generation run directory.")],
    system: Annotated[
        Optional[str], typer.Option(help="System message for the conversation (default: the run's data.system_prompt).")
    ] = None,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    max_new_tokens: MaxNew = None,
    repetition_penalty: RepetitionPenalty = None,
    no_repeat_ngram_size: NoRepeat = None,
    stop: Stop = None,
    num_beams: NumBeams = None,
    length_penalty: LengthPenalty = None,
):
    """Talk to a tuned model; answers stream as they are generated (whole, with beam search); the history is
    kept (type /reset, /exit)."""
    generator = _generator(run_dir)
    decoding = _decoding(repetition_penalty, no_repeat_ngram_size, stop, num_beams, length_penalty)
    generator.decoding_with(decoding)  # bad settings fail here, not at the first answer
    history = [{"role": "system", "content": system}] if system else []
    err.print("Chat with the tuned model. /reset clears the history, /exit (or Ctrl-D) quits.")
    while True:
        try:
            user = _clean(input("you> ")).strip()
        except EOFError:
            break
        except UnicodeDecodeError:
            err.print("[yellow]That line is not UTF-8 text; type it again.[/]")
            continue
        if user in ("/exit", "/quit"):
            break
        if user == "/reset":
            history = history[:1] if system else []
            continue
        if not user:
            continue
        history.append({"role": "user", "content": user})
        out.print("model> ", end="")
        answer = ""
        try:
            for piece in generator.stream(history, max_new_tokens, temperature, top_p, decoding):
                out.print(piece, end="", highlight=False, markup=False)
                answer += piece
        except TunesmithError as exc:  # a failed generation ends the turn, never the session (and never hangs)
            out.print()
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            history.pop()
            continue
        out.print()
        history.append({"role": "assistant", "content": answer.strip()})


def _clean(text: str) -> str:
    """Bytes that are not UTF-8 reach Python as lone surrogates, which tokenizers reject: replace them."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


@app.command("generate")
@friendly
def generate_(
    run_dir: Annotated[Path, typer.Argument(help="A finished generation run directory.")],
    input: Annotated[Path, typer.Argument(help="CSV/JSONL/... with a prompt column, or a messages column.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write (format from its extension).")],
    prompt_column: Annotated[
        Optional[str],
        typer.Option(help="Prompt column (default: found as the run found its training prompts)."),
    ] = None,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    max_new_tokens: MaxNew = None,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together.")] = 16,
    repetition_penalty: RepetitionPenalty = None,
    no_repeat_ngram_size: NoRepeat = None,
    stop: Stop = None,
    num_beams: NumBeams = None,
    length_penalty: LengthPenalty = None,
    base: Annotated[
        bool,
        typer.Option("--base", help="Also a `base_generated` column: the model the run started from, same settings."),
    ] = False,
    overwrite: Overwrite = False,
):
    """Add a `generated` column to every row of INPUT (batched)."""
    from ..data.conversations import prompts_of
    from ..data.readers import read_table
    from ..data.writers import claim_output, write_table

    claim_output(output, overwrite, inputs=[input], table=True)
    generator = _generator(run_dir)
    generator.batch_size = batch_size
    decoding = _decoding(repetition_penalty, no_repeat_ngram_size, stop, num_beams, length_penalty)
    generator.decoding_with(decoding)  # bad settings fail before the file is read
    frame = read_table(input, "input")
    prompts = prompts_of(frame, generator.recipe.data, str(input), prompt_column)  # found as the run found its own
    frame["generated"] = generator.generate(prompts, max_new_tokens, temperature, top_p, decoding)
    if base:  # side by side: what fine-tuning changed on these prompts
        from ..predict import load_base

        start = load_base(run_dir)
        start.batch_size = batch_size
        frame["base_generated"] = start.generate(prompts, max_new_tokens, temperature, top_p, decoding)
    write_table(frame, output)
    out.print(f"{len(frame)} answers written to {output}")


@app.command()
@friendly
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="hf | onnx (classifiers) | gguf (decoders).")] = "hf",
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Target folder (default RUN_DIR/exports/FORMAT).")
    ] = None,
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="GGUF weights: f16 | f32 | q8_0.")] = "f16",
    merge: Annotated[
        bool, typer.Option("--merge", hidden=True, help="Kept for old scripts: hf exports always merge.")
    ] = False,
):
    """Write a finished run's model for deployment: a plain Hugging Face folder, ONNX, or GGUF + Ollama Modelfile."""
    from ..export import export_run

    record = export_run(run_dir, fmt.lower(), output, gguf_type=gguf_type)
    out.print(f"{fmt} export written to {record['path']}")
    if "parity" in record:
        out.print(
            f"parity: onnxruntime vs PyTorch on {record['parity']['texts']} texts, max difference "
            f"{record['parity']['max_abs_difference']:.2e}"
        )
    if "round_trip" in record:
        trip = record["round_trip"]
        out.print(
            f"round trip: GGUF read back vs the merged model on {trip['prompts']} prompts, max logit difference "
            f"{trip['max_abs_logit_difference']:.3g}, same next token on {trip['same_next_token']}/{trip['prompts']}"
        )
    out.print(f"loads with: {record['loads_with']}")
