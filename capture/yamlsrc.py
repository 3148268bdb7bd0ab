"""YAML loading that remembers where every value came from.

Plans and configuration files are validated by pydantic; pydantic knows *which key* is wrong but
not *where* it is. :func:`load_located` keeps a map from key paths to line numbers so every error
can name file, line and key. Duplicate keys (silently merged by plain PyYAML) are errors.

Everything read is untrusted and bounded: at most :data:`MAX_INPUT_BYTES` of a regular file,
no control characters, no anchors or aliases (``&a``/``*a``: the recursion and "billion laughs"
bombs), at most :data:`MAX_DEPTH` levels of nesting. Each is a located error (exit 2), never a
parser traceback. Text from the file is shown escaped and truncated (:func:`shown`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.inputfile import MAX_INPUT_BYTES
from calibd.capture.inputfile import InputFileError
from calibd.capture.inputfile import read_input_text
from calibd.capture.textsafe import shown

KeyPath = tuple[str | int, ...]
MAX_DEPTH = 32  # nesting levels of mappings and lists; plans and configurations use < 8
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class Located:
    """Plain data (dicts, lists, scalars) plus the 1-based line of every key path."""

    data: Any
    file: Path | None
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path`` or of its nearest located ancestor."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_key(path), message)


def format_key(path: Sequence[str | int]) -> str:
    """``("sets", 1, "gains", 0)`` -> ``sets[1].gains[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = shown(part, 40)
            out += f".{name}" if out else name
    return out


def load_located(
    source: Path | str, *, error: type[InputError], text: str | None = None
) -> Located:
    """Parse a YAML file (or ``text``, reported as ``source``) into :class:`Located`.

    Raises ``error`` (a PlanError or ConfigError) for unreadable files, syntax errors, duplicate
    keys, non-string keys and empty documents.
    """
    path = Path(source)
    if text is None:
        try:
            text = read_input_text(path)
        except InputFileError as err:
            raise error([Problem(path, None, "", f"cannot read file: {err}")]) from None
    elif len(text) > MAX_INPUT_BYTES:
        raise error([Problem(path, None, "", f"is larger than {MAX_INPUT_BYTES} bytes")])
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise error([Problem(path, line, _key_near(text, line),
                             f"control character '{shown(bad.group())}' (U+{ord(bad.group()):04X})"
                             f" in column {column}: only printable text, tabs and new lines "
                             "are allowed")])
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise error([Problem(path, 1, "", "the file is empty")])
        located = Located(data=None, file=path)
        located.data = _convert(loader, node, (), located, error)
        return located
    except yaml.YAMLError as err:
        problem_mark = getattr(err, "problem_mark", None)
        context_mark = getattr(err, "context_mark", None)
        mark = problem_mark or context_mark
        err_line: int | None = mark.line + 1 if mark is not None else None
        what = getattr(err, "problem", None) or str(err)
        if context_mark is not None and problem_mark is not None \
                and context_mark.line < problem_mark.line:
            # e.g. an unclosed [ ... : name the line where the construct began.
            what += f" (noticed on line {err_line}; {getattr(err, 'context', '')} here)"
            err_line = context_mark.line + 1
        key = _key_near(text, err_line)
        kind = "" if isinstance(err, _Refused) else "YAML syntax error: "
        raise error([Problem(path, err_line, key, f"{kind}{shown(what, 160)}")]) from None
    finally:
        loader.dispose()


class _Refused(yaml.MarkedYAMLError):
    """A construct the loader does not accept (anchor, alias, too deep), at its mark."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases and with a nesting limit: composing can neither
    recurse for ever (``a: &a [*a]``) nor expand an alias bomb."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner looks at every open flow level for each token: refuse deep [[[[ ... early
        # rather than spend quadratic time before composing would refuse it.
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(self.get_mark(), f"nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, "YAML aliases (*name) are not allowed: write the "
                                             "value out")
        if getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, "YAML anchors (&name) are not allowed: write the "
                                             "value out where it is used")
        if self._depth >= MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _key_near(text: str, line: int | None) -> str:
    """The mapping key written on ``line`` (or the nearest line above it), for syntax errors."""
    if line is None:
        return ""
    lines = text.splitlines()
    for i in range(min(line, len(lines)) - 1, -1, -1):
        match = re.match(r"^\s*(?:-\s*)?([A-Za-z_][\w.-]*)\s*:", lines[i])
        if match:
            return shown(match.group(1), 40)
    return ""


def _convert(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    located: Located,
    error: type[InputError],
) -> Any:
    located.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
        raise error([Problem(located.file, node.start_mark.line + 1, format_key(path),
                             f"the YAML tag {shown(node.tag, 60)!r} is not allowed")])
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(loader, key_node, path, located, error)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise error([Problem(located.file, line, format_key(path),
                                     f"keys must be text, got {shown(repr(key), 40)}")])
            if key in out:
                raise error([Problem(located.file, line, format_key((*path, key)),
                                     "duplicate key (it appears twice in the same mapping)")])
            located.lines[(*path, key)] = line
            out[key] = _convert(loader, value_node, (*path, key), located, error)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(loader, item, (*path, i), located, error)
            for i, item in enumerate(node.value)
        ]
    return _construct(loader, node, path, located, error)


def _construct(loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, located: Located,
               error: type[InputError]) -> Any:
    """One scalar (or key) as Python data. PyYAML's constructors raise plain ValueError and
    friends for some values (an integer of thousands of digits, an impossible timestamp): those
    become located errors too."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, AttributeError, OverflowError, IndexError) as err:
        raise error([Problem(located.file, node.start_mark.line + 1, format_key(path),
                             f"cannot read this value ({shown(err, 80)})")]) from None


def problems_from_validation(
    err: ValidationError,
    located: Located,
    *,
    allowed_keys: Callable[[KeyPath], Sequence[str]] | None = None,
) -> list[Problem]:
    """Turn pydantic errors into located problems (data path, line, readable message)."""
    messages: dict[KeyPath, list[str]] = {}
    for item in err.errors():
        path = _data_path(located.data, item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            name = shown(path[-1], 40) if path else "?"
            message = f"unknown key {name!r}"
            if allowed_keys is not None:
                allowed = list(allowed_keys(path[:-1]))
                close = difflib.get_close_matches(name, allowed, n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
                elif allowed:
                    message += f" (allowed: {', '.join(allowed)})"
        elif kind == "missing":
            message = "required key is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            ctx = item.get("ctx", {})
            field_name = str(ctx.get("discriminator", "")).strip("'\"")
            path = (*path, field_name) if field_name else path
            if kind == "union_tag_invalid":
                message = (f"unknown {field_name} {ctx.get('tag')!r} (expected "
                           f"{str(ctx.get('expected_tags', '')).replace(chr(39), '')})")
            else:
                message = f"required key {field_name!r} is missing"
        else:
            message = str(item["msg"])
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
            got = item.get("input")
            if kind not in {"model_type", "union_tag_invalid"} and _short(got):
                message += f" (got {got!r})"
        found = messages.setdefault(path, [])
        if message not in found:
            found.append(message)
    return [located.problem(path, " or ".join(msgs)) for path, msgs in messages.items()]


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 40


def _data_path(data: Any, loc: Sequence[str | int]) -> KeyPath:
    """Follow pydantic's ``loc`` through the data, dropping union tags and function names."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and any(cur.get(d) == part for d in _DISCRIMINATORS):
            continue  # a tagged-union branch name, not a key
        if _has(cur, part):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and _is_field_name(part):
            # A missing or extra key: it is the last meaningful element.
            out.append(part)
            cur = None
        # else: a union tag ('dark', 'function-after[...]'): skip
    return tuple(out)


def _has(container: Any, part: str | int) -> bool:
    if isinstance(container, dict):
        return isinstance(part, str) and part in container
    if isinstance(container, list):
        return isinstance(part, int) and 0 <= part < len(container)
    return False


_DISCRIMINATORS = ("kind", "driver", "source", "type", "trigger")


def _is_field_name(part: str) -> bool:
    return part.replace("_", "").replace("-", "").isalnum() and "[" not in part
