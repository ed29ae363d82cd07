"""An Ollama Modelfile whose TEMPLATE renders conversations exactly as the run's chat template did.

Ollama templates are Go templates, not Jinja, so the Jinja template cannot be copied. Instead it is
rendered on marker messages, and the text around each role's content becomes that role's prefix and
suffix; `pieces` and `render_like_ollama` say the same thing in Python, so a test can hold the Go
template's output equal to the Jinja rendering. A default system prompt the template adds by itself
(SmolLM2's does) becomes the Modelfile's SYSTEM line, which Ollama sends when a request has none."""

from __future__ import annotations

from pathlib import Path

MARK = {"system": "\x01SYSTEM\x01", "user": "\x01USER\x01", "assistant": "\x01ASSISTANT\x01"}


def pieces(tokenizer) -> dict:
    from ..errors import TunesmithError
    from ..tasks.generation.formatting import render

    s, u, a = ({"role": r, "content": MARK[r]} for r in ("system", "user", "assistant"))
    try:
        with_system = render(tokenizer, [s])
    except TunesmithError:
        with_system = None  # templates that refuse a system turn
    convo = render(tokenizer, [u, a])
    user_pre, rest = convo.split(MARK["user"])
    user_post, rest = rest.split(MARK["assistant"])
    # user_post holds the user's suffix and the assistant's prefix; the generation prompt says where they split
    prompt = render(tokenizer, [u], add_generation_prompt=True).split(MARK["user"])[1]
    plain = render(tokenizer, [u]).split(MARK["user"])[1]
    out = {
        "user_post": plain,
        "assistant_pre": prompt[len(plain) :],
        "assistant_post": rest,
        "default": "",
        "user_pre": user_pre,
        "system_pre": "",
        "system_post": "",
    }
    if with_system is not None:
        out["system_pre"], out["system_post"] = with_system.split(MARK["system"])
        with_both = render(tokenizer, [s, u]).split(MARK["system"])[1].split(MARK["user"])[0]
        out["user_pre"] = with_both[len(out["system_post"]) :]
        lead = user_pre[: len(user_pre) - len(out["user_pre"])]  # what the template adds when no system turn is given
        sys_pre, sys_post = out["system_pre"], out["system_post"]
        if lead.startswith(sys_pre) and lead.endswith(sys_post) and len(lead) >= len(sys_pre) + len(sys_post):
            out["default"] = lead[len(sys_pre) : len(lead) - len(sys_post)]
    return out


def render_like_ollama(p: dict, messages: list[dict], system: str | None = None) -> str:
    """What the Go template below produces (Ollama puts SYSTEM first when the request has no system turn)."""
    if not any(m["role"] == "system" for m in messages) and (system or p["default"]):
        messages = [{"role": "system", "content": system or p["default"]}] + messages
    text = "".join(p[f"{m['role']}_pre"] + m["content"] + p[f"{m['role']}_post"] for m in messages)
    return text + p["assistant_pre"]


def go_template(p: dict) -> str:
    q = lambda s: s.replace("{{", '{{ "{{" }}')  # noqa: E731  (literal braces in a marker would start a Go action)
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{q(p[role + "_pre"])}{{{{ .Content }}}}'
        f"{q(p[role + '_post'])}"
        for i, role in enumerate(("system", "user", "assistant"))
    )
    return f"{{{{- range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{q(p['assistant_pre'])}"


def stop_words(tokenizer) -> list[str]:
    from ..tasks.generation.formatting import stop_token_ids

    return [tokenizer.convert_ids_to_tokens(i) for i in stop_token_ids(tokenizer)]


def write_modelfile(path: Path, gguf_name: str, tokenizer) -> list[str]:
    p, stops = pieces(tokenizer), stop_words(tokenizer)
    lines = [
        f"# Ollama: ollama create my-model -f {path.name}   (written by tunesmith export)",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{go_template(p)}"""',
    ]
    if p["default"]:
        lines.append(f'SYSTEM """{p["default"]}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return stops
