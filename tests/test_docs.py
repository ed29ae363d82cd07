"""The docs' examples hold: every `tunesmith` command line in a code block of the README or docs/ names a real
command and only options it has, and every YAML block that is a recipe (or a part of one) passes the schema."""

import shlex
from pathlib import Path

import pytest
import typer.main
import yaml

from tunesmith.cli import app
from tunesmith.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(page: Path):
    """(language, first line number, lines) of each fenced code block."""
    lines, block, start, lang = page.read_text(encoding="utf-8").splitlines(), None, 0, ""
    for number, line in enumerate(lines, start=1):
        if line.startswith("```"):
            if block is None:
                block, start, lang = [], number + 1, line[3:].strip()
            else:
                yield lang, start, block
                block = None
        elif block is not None:
            block.append(line)


def _commands():
    for page in PAGES:
        for _lang, start, block in _blocks(page):
            for offset, line in enumerate(block):
                for part in line.split(" | "):  # a table of commands puts several on a line
                    part = part.strip()
                    if part.startswith("tunesmith "):
                        yield pytest.param(part, id=f"{page.name}:{start + offset}")


def _options(command) -> set[str]:
    return {name for p in command.params for name in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}


@pytest.mark.parametrize("line", list(_commands()))
def test_a_documented_command_has_the_options_it_shows(line):
    words = shlex.split(line, comments=True)
    command, i = typer.main.get_command(app), 1
    while hasattr(command, "commands") and i < len(words) and not words[i].startswith("-"):
        if words[i] not in command.commands:
            break
        command, i = command.commands[words[i]], i + 1
    if hasattr(command, "commands"):  # a group: the next word, if any, must be one of its commands
        assert i == len(words) or words[i].startswith("-") or words[i] in command.commands, line
    known = _options(command) | {"--help"}
    unknown = [w.split("=")[0] for w in words[i:] if w.startswith("--") and w.split("=")[0] not in known]
    assert not unknown, f"{line}: no such option(s) {unknown}; the command has {sorted(known)}"


def _recipes():
    for page in PAGES:
        for lang, start, block in _blocks(page):
            if lang != "yaml":
                continue
            loaded = yaml.safe_load("\n".join(block))
            if isinstance(loaded, dict):
                yield pytest.param(loaded, id=f"{page.name}:{start}")


@pytest.mark.parametrize("block", list(_recipes()))
def test_a_documented_recipe_passes_the_schema(block):
    whole = "data" in block and ("model" in block or "task" in block) or "stages" in block or "experiences" in block
    if not whole:  # a fragment: its sections inside the smallest recipe there is
        data = block.get("data") or {}
        source = {} if ("hub" in data or "train" in data) else {"train": "train.csv"}
        block = {"model": "minilm-l6", **block, "data": {**source, **data}}
    Recipe.model_validate(block)
