"""POST /v1/feedback: the correct answer for a request the server answered (and recorded with --collect).

One field, by what the model does: `label` (classification), `labels` (multi-label), `value` (regression),
`entities` (token classification: [{"start", "end", "label"}]), `answer` or `rating` (generation). Each is
checked against the run it is for, so a typo in a label name is a 400 that names it, not a silent bad row."""

from __future__ import annotations

import math

from .errors import ApiError

FIELDS = ("label", "labels", "value", "entities", "answer", "rating")


def checked(run, body: dict, given_input=None) -> tuple[str, object]:
    """(kind, value) of a feedback body for `run` (a Served), or the 400 that says what is wrong. `given_input`:
    the recorded request's input, which entity spans must fit (a span an update cannot tag would stop it)."""
    given = [f for f in FIELDS if f in body]
    wanted = _wanted(run)
    if len(given) != 1 or given[0] not in wanted:
        raise ApiError(
            400,
            f"Send exactly one of {', '.join(wanted)} for a {run.task} run (got: {', '.join(given) or 'none'}).",
            param="feedback",
            code="invalid_value",
        )
    kind, value = given[0], body[given[0]]
    # classifiers name their labels classes_; the entity tagger its IOB2 tags labels
    classes = list(getattr(run.predictor, "classes_", None) or getattr(run.predictor, "labels", None) or [])
    if kind == "label":
        _one_label(value, classes, kind)
    elif kind == "labels":
        if not isinstance(value, list):
            raise _bad(kind, "a list of label names")
        for label in value:
            _one_label(label, classes, kind)
    elif kind == "value":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise _bad(kind, "a finite number")
    elif kind == "entities":
        _entities(value, classes)
        if isinstance(given_input, str):
            _spans_fit(value, given_input)
    elif kind == "answer":
        if not isinstance(value, str) or not value.strip() or len(value) > 100_000:
            raise _bad(kind, "the corrected answer as a non-empty string")
    elif kind == "rating" and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5):
        raise _bad(kind, "a whole number from 1 to 5")
    return kind, value


def _wanted(run) -> tuple[str, ...]:
    if run.generative:
        return ("answer", "rating")
    if hasattr(run.predictor, "predict_tags"):
        return ("entities",)
    if hasattr(run.predictor, "thresholds"):
        return ("labels",)
    if not hasattr(run.predictor, "predict_proba"):
        return ("value",)
    return ("label",)


def _one_label(value, classes: list, kind: str) -> None:
    if not isinstance(value, str):
        raise _bad(kind, "label names (strings)")
    if classes and value not in classes:
        shown = ", ".join(map(str, classes[:20])) + (" ..." if len(classes) > 20 else "")
        raise ApiError(
            400, f"{kind}: '{value}' is not a label of this run. Its labels: {shown}.", param=kind, code="unknown_label"
        )


def _entities(value, classes: list) -> None:
    types = {c.split("-", 1)[-1] for c in classes if c != "O"}
    if not isinstance(value, list):
        raise _bad("entities", 'a list of {"start": int, "end": int, "label": str}')
    for span in value:
        if not (
            isinstance(span, dict)
            and all(isinstance(span.get(k), int) and not isinstance(span.get(k), bool) for k in ("start", "end"))
            and 0 <= span["start"] < span["end"]
            and isinstance(span.get("label"), str)
        ):
            raise _bad("entities", 'spans as {"start": int, "end": int, "label": str} with start < end')
        if types and span["label"] not in types:
            raise ApiError(
                400,
                f"entities: '{span['label']}' is not an entity type of this run ({', '.join(sorted(types))}).",
                param="entities",
                code="unknown_label",
            )


def _spans_fit(spans: list[dict], text: str) -> None:
    """The spans tag the request's own words, as an update will read them (data.tokens.check_spans)."""
    from ..data.tokens import check_spans
    from ..errors import TunesmithError

    try:
        check_spans(text, spans)
    except TunesmithError as error:
        raise ApiError(400, str(error), param="entities", code="invalid_value") from None


def _bad(field: str, what: str) -> ApiError:
    return ApiError(400, f"{field}: send {what}.", param=field, code="invalid_value")
