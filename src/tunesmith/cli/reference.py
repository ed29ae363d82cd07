"""The recipe reference (docs/recipe-reference.md), rendered from the recipe's JSON Schema so that it cannot
drift from what the loader accepts: `tunesmith recipe reference > docs/recipe-reference.md`."""

from __future__ import annotations

SECTIONS = (  # (heading, path to the keys' object in the schema, prefix of the keys)
    ("Top level", None, ""),
    ("model", "ModelSection", "model."),
    ("data", "DataSection", "data."),
    ("method: supervised", "SupervisedMethod", "method."),
    ("method: few_shot", "FewShotMethod", "method."),
    ("method: domain_adaptation", "DomainAdaptationMethod", "method."),
    ("method: continual", "ContinualMethod", "method."),
    ("method: preference", "PreferenceMethod", "method."),
    ("method.lora", "LoraSection", "method.lora."),
    ("train", "TrainSection", "train."),
    ("train.early_stopping", "EarlyStopping", "train.early_stopping."),
    ("eval", "EvalSection", "eval."),
    ("eval.decoding", "DecodingSection", "eval.decoding."),
    ("output", "OutputSection", "output."),
    ("sweep", "SweepSection", "sweep."),
    ("stages[]", "Stage", "stages[]."),
    ("experiences[]", "Experience", "experiences[]."),
)
HEAD = """# Recipe reference

Every key a recipe accepts, its type, its default and what it does, generated from the schema
(`tunesmith recipe reference`; the JSON Schema itself: `tunesmith recipe schema`). A default of `auto`
means tunesmith chooses the value from the data, the model and the method, prints why at the start of
the run, and saves it in the run's `recipe.yaml`. Unknown keys are refused with a "did you mean".
Narrative guides: [recipes.md](recipes.md).
"""


def _type(prop: dict) -> str:
    if "$ref" in prop:
        return "section"
    if "enum" in prop:
        return " | ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop or "oneOf" in prop:
        parts = [_type(p) for p in prop.get("anyOf", prop.get("oneOf", []))]
        return " | ".join(dict.fromkeys(p for p in parts if p != "null")) + (" | null" if "null" in parts else "")
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object":
        return "mapping"
    return {"number": "number", "integer": "integer", "string": "text", "boolean": "bool"}.get(kind, kind)


def _default(prop: dict, required: bool) -> str:
    if "default" not in prop:
        return "required" if required else "—"
    value = prop["default"]
    return "null" if value is None else f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference_markdown(schema: dict, method_defaults: list[tuple[str, str, str, dict]]) -> str:
    """Every key of the schema by section, then the train defaults that methods declare for themselves."""
    lines = [HEAD]
    for heading, ref, prefix in SECTIONS:
        node = schema if ref is None else schema["$defs"][ref]
        required = set(node.get("required", []))
        lines += [f"## {heading}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, prop in node["properties"].items():
            lines.append(
                f"| `{prefix}{name}` | {_cell(_type(prop))} | {_cell(_default(prop, name in required))} | "
                f"{_cell(prop.get('description', ''))} |"
            )
        lines.append("")
    lines += [
        "## Method defaults",
        "",
        "Train keys a method sets for itself when the recipe leaves them unset (before "
        "the `auto` rules, which fill the rest):",
        "",
        "| method | task | model kind | defaults |",
        "|---|---|---|---|",
    ]
    for method, task, kind, defaults in method_defaults:
        shown = ", ".join(f"`train.{k}: {v}`" for k, v in defaults.items())
        lines.append(f"| `{method}` | {task} | {kind or 'any'} | {shown} |")
    return "\n".join(lines) + "\n"
