"""Read a plan file: YAML with line tracking, then the strict schema. Raises PlanError."""

from __future__ import annotations

import hashlib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError

from calibd.capture.errors import PlanError
from calibd.capture.plans.model import SET_MODELS
from calibd.capture.plans.model import Plan
from calibd.capture.yamlsrc import KeyPath
from calibd.capture.yamlsrc import Located
from calibd.capture.yamlsrc import load_located
from calibd.capture.yamlsrc import problems_from_validation


def load_plan(path: Path | str, text: str | None = None) -> tuple[Plan, Located]:
    """Parse and validate a plan file. Blocks on file I/O only. Raises PlanError."""
    located = load_located(path, error=PlanError, text=text)
    if not isinstance(located.data, dict):
        raise PlanError([located.problem((), "a plan must be a mapping with a 'sets' list")])
    try:
        plan = Plan.model_validate(located.data)
    except ValidationError as err:
        problems = problems_from_validation(
            err, located, allowed_keys=lambda p: allowed_keys(Plan, located.data, p)
        )
        raise PlanError(problems) from None
    return plan, located


def plan_digest(located: Located) -> str:
    """A short hash of the plan's meaning (not its formatting) for the run journal."""
    import json

    text = json.dumps(located.data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def allowed_keys(root: type[BaseModel], data: Any, path: KeyPath) -> Sequence[str]:
    """Field names of the model that sits at ``path`` in ``data`` (for 'did you mean')."""
    model: Any = root
    cur = data
    for part in path:
        if isinstance(part, int):
            cur = cur[part] if isinstance(cur, list) and part < len(cur) else None
            if isinstance(cur, dict) and cur.get("kind") in SET_MODELS:
                model = SET_MODELS[str(cur["kind"])]
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        model = _inner_model(fields[part].annotation)
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, dict) and cur.get("kind") in SET_MODELS and model is root:
        model = SET_MODELS[str(cur["kind"])]
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else []


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside Optional[...] / list[...] annotations, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            inner = _inner_model(arg)
            if inner is not None:
                return inner
    return None
