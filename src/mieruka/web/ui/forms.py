"""The submit form of a task, both ways, in the words of the JSON schema the API validates against.

`form_fields(task)` turns each parameter into a `Field` that `_form_fields.html` renders as an HTML input.
The browser posts the form to `POST /tasks/<name>` (or `POST /api/tasks/<name>/jobs`: `web.submission` reads
both), and `form_params(task, items)` reads it back by the same schema and the same kind of input:

- one value (text, number, date, select, checkbox): the last one sent (a checkbox sends a hidden "false"
  before its "true"), line breaks as "\\n"; empty is None when None is allowed; a select of numbers gives
  the number;
- list: one item per line and/or per repeated field, blank lines dropped, items stripped; or a JSON array.
  Nothing but blanks is None when None is allowed, else [];
- objects (fieldset, dict): dotted names (`window.start`), each read by its own schema, laid over the JSON
  object sent under the object's own name if there is one;
- json: the JSON text (a text that is not JSON is passed on for validation to refuse); empty is None when
  None is allowed, else left out so the default applies.

The inputs carry the schema's bounds so the browser can help, but only the server's validation decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic_core import to_jsonable_python

from ...core.task import Task
from ...i18n import Localized, _

Kind = Literal[
    "text", "textarea", "number", "checkbox", "select", "date", "datetime", "list", "fieldset", "file", "files", "json"
]

_MISSING: Any = object()
_CSRF_FIELD = "csrf_token"  # web/security.py checks it before the route runs
_SCALARS = {"string", "integer", "number", "boolean"}
_TRUE = {"1", "on", "true", "yes", "y", "t"}
_TEXTAREA_LENGTH = 200


@dataclass
class Field:
    """One input of a task's form. `name` is what the browser posts (nested fields are dotted: `window.start`);
    `value` is the text the input shows (for a checkbox, `checked` says whether it is ticked)."""

    name: str
    label: str
    kind: Kind
    required: bool = False  # the API needs a value: the parameter has no default
    optional: bool = False  # None is allowed: an empty input means None
    value: str = ""
    checked: bool = False
    help: str = ""  # the parameter's description (docstring Args or Field(description=...))
    hint: str = ""  # how to fill in this kind of input ("One item per line.")
    minimum: int | float | None = None
    maximum: int | float | None = None
    step: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None  # in the browser's dialect: the whole value must match
    options: list[str] = field(default_factory=list)
    error: str | None = None
    children: list[Field] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The HTML id of the input ("param-window-start")."""
        return "param-" + self.name.replace(".", "-")

    @property
    def input_type(self) -> str:
        """The type attribute of an <input> of this kind ("datetime-local" for datetime)."""
        return "datetime-local" if self.kind == "datetime" else self.kind

    @property
    def input_required(self) -> bool:
        """Whether the browser should refuse to send the input empty."""
        if self.optional or self.kind in ("checkbox", "fieldset", "list"):
            return False
        if self.kind in ("number", "date", "datetime"):
            return True  # empty is never a valid number or date
        return self.required

    @property
    def selected(self) -> list[str]:
        """The chosen options: one for a select, several for a list with options."""
        if self.kind == "list":
            return [line for line in self.value.splitlines() if line]
        return [self.value]

    @property
    def blank_option(self) -> bool:
        """Whether a select needs an empty first option (None, or no choice made yet)."""
        return self.kind == "select" and (self.optional or self.value not in self.options)

    @property
    def rows(self) -> int:
        """Height of a textarea: its content plus a spare line, 3 to 12 lines."""
        return max(3, min(12, self.value.count("\n") + 2))

    def walk(self) -> Iterator[Field]:
        """This field and all fields nested in it."""
        yield self
        for child in self.children:
            yield from child.walk()


def form_fields(
    task: Task, values: Mapping[str, Any] | None = None, errors: Mapping[str, str] | None = None
) -> list[Field]:
    """The fields of `task`'s form, showing `values` instead of the defaults where given, and `errors`.

    `values` are either what a form posted, so a rejected form comes back as typed (strings, keyed by input
    name; a starlette FormData also gives the repeated values of a field), or a job's stored parameters, for
    "run again" (JSON values: numbers, booleans, lists, nested objects, None). A string is taken as typed
    into the input; anything else as a parameter value, shown as a default would be.
    `errors` maps the API's field paths ("count", "window.start", "names.1") to messages; an error deeper
    than any field goes on the nearest field above it ("names.1" on names, as "item 2: ...")."""
    schema = task.signature.model.model_json_schema()
    builder = _Builder(schema.get("$defs", {}), values, task.signature.file_fields, task.signature.multi_file_fields)
    required = set(schema.get("required", []))
    defaults = _defaults(task)
    fields = [
        builder.build(name, prop, name in required, defaults.get(name, _MISSING), top=True)
        for name, prop in schema.get("properties", {}).items()
    ]
    described = task.signature.model.model_fields
    for top in fields:  # help and labels given per language: the schema has their English, the page the reader's
        info = described.get(top.name)
        if info is not None and isinstance(info.description, Localized):
            top.help = info.description
        if info is not None and isinstance(info.title, Localized):
            top.label = info.title
        for inner in top.walk():  # the fields of a parameter's model, labelled and helped by dotted name
            inner.label = task.signature.nested_labels.get(inner.name, inner.label)
            inner.help = task.signature.nested_help.get(inner.name, inner.help)
    for path, message in (errors or {}).items():
        match = _match(fields, path)
        if match is not None:
            target, note = match
            text = f"{note}: {message}" if note else message
            target.error = f"{target.error}; {text}" if target.error else text
    return fields


def unplaced_errors(fields: list[Field], errors: Mapping[str, str]) -> dict[str, str]:
    """The errors `form_fields` could not show on any field (unknown parameters, errors about the whole body),
    for the page to show above the form."""
    return {path: message for path, message in errors.items() if _match(fields, path) is None}


def form_params(task: Task, items: Iterable[tuple[str, object]]) -> dict[str, Any]:
    """The parameters a posted form (name, value pairs) stands for, without the task's file fields (the caller
    saves those uploads). A name that is no parameter nor a part of one is kept as sent, for validation to
    report; the form's CSRF field (checked before the route runs) is dropped."""
    schema = task.signature.model.model_json_schema()
    reader = _Schema(schema.get("$defs", {}))
    files = task.signature.file_fields
    properties = {name: prop for name, prop in schema.get("properties", {}).items() if name not in files}
    posted: dict[str, list[str]] = {}
    for name, value in items:
        texts = posted.setdefault(name, [])
        if isinstance(value, str):
            texts.append(value)
        elif name not in properties:
            texts.append(str(getattr(value, "filename", "") or ""))
    nesting = {name for name, prop in properties.items() if reader.nests(prop)}
    parts: dict[str, dict[str, list[str]]] = {}
    params: dict[str, Any] = {}
    for name, texts in posted.items():
        head, dot, rest = name.partition(".")
        if name in properties or name in files or name == _CSRF_FIELD:
            continue
        if dot and head in nesting:
            parts.setdefault(head, {})[rest] = texts
        else:
            params[name] = texts[-1] if texts else ""
    for name, prop in properties.items():
        texts, nested = posted.get(name, []), parts.get(name, {})
        if texts or nested:
            value = reader.value(prop, texts, nested)
            if value is not _MISSING:
                params[name] = value
    return params


def _match(fields: list[Field], path: str) -> tuple[Field, str] | None:
    """The field an error path belongs to (the longest dotted prefix) and what is left of the path, as a note:
    "names.1" → (names, "item 2")."""
    by_name = {f.name: f for top in fields for f in top.walk()}
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        target = by_name.get(".".join(parts[:cut]))
        if target is None:
            continue
        rest = parts[cut:]
        if not rest:
            return target, ""
        if len(rest) == 1 and rest[0].isdigit():
            return target, _("item %(number)s", number=int(rest[0]) + 1)
        return target, ".".join(rest)
    return None


def _defaults(task: Task) -> dict[str, Any]:
    """Each optional parameter's default in its JSON form (default factories called, unlike the schema)."""
    defaults: dict[str, Any] = {}
    for name, info in task.signature.model.model_fields.items():
        if info.is_required():
            continue
        try:
            defaults[name] = to_jsonable_python(info.get_default(call_default_factory=True, validated_data={}))
        except Exception:
            continue
    return defaults


class _Schema:
    """The words both directions of the form share: what a parameter's schema node stands for, and which kind of
    input shows it. `form_fields` writes each kind into the form; `form_params` reads the same kinds back."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """The node with `$ref` (or a one-element allOf) replaced by its definition; the referring node's own
        keys win, and the definition's title and description (of the class, not the parameter) are dropped."""
        target: dict[str, Any] | None = None
        if "$ref" in node:
            target = self.defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            target = self._resolve(node["allOf"][0])
        if target is None:
            return node
        merged = {k: v for k, v in self._resolve(target).items() if k not in ("title", "description")}
        merged.update({k: v for k, v in node.items() if k not in ("$ref", "allOf")})
        return merged

    def _unwrap(self, prop: dict[str, Any]) -> tuple[dict[str, Any], bool, bool]:
        """(the schema of the value, whether None is allowed, whether several other types are allowed)."""
        node = self._resolve(prop)
        choices = node.get("anyOf") or node.get("oneOf")
        if isinstance(choices, list):
            others = [self._resolve(c) for c in choices if c.get("type") != "null"]
            optional = len(others) < len(choices)
            outer = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
            if len(others) == 1:
                inner, more_optional, mixed = self._unwrap(others[0])
                return {**inner, **outer}, optional or more_optional, mixed
            if all(o.get("type") in _SCALARS for o in others):
                return {**outer, "type": "string"}, optional, True
            return outer, optional, True
        types = node.get("type")
        if isinstance(types, list):  # {"type": ["integer", "null"]}
            others = [t for t in types if t != "null"]
            rest = {**node, "type": others[0] if len(others) == 1 else others}
            return rest, len(others) < len(types), len(others) > 1
        return node, False, False

    def _kind(self, node: dict[str, Any], optional: bool, mixed: bool) -> Kind:
        """The input for a value of this schema (files aside: they are known by the task, not the schema)."""
        if mixed:
            return "text" if node.get("type") == "string" else "json"
        if _enum(node):
            return "select"
        kind = node.get("type")
        if kind == "boolean":
            return "select" if optional else "checkbox"
        if kind in ("integer", "number"):
            return "number"
        if kind == "string":
            fmt = node.get("format")
            return "date" if fmt == "date" else "datetime" if fmt == "date-time" else "text"
        if kind == "array":
            items = self._resolve(node.get("items", {}))
            if "items" in node and "prefixItems" not in node and (items.get("type") in _SCALARS or _enum(items)):
                return "list"
            return "json"
        if kind == "object":
            return "fieldset" if node.get("properties") and not optional else "json"
        if kind is None and "properties" not in node:
            return "text"  # Any: the string is passed on as typed
        return "json"

    def nests(self, prop: dict[str, Any]) -> bool:
        """Whether the value is an object, whose parts the form may send by dotted names."""
        node = self._unwrap(prop)[0]
        return node.get("type") == "object" or "properties" in node or "additionalProperties" in node

    def value(self, prop: dict[str, Any], texts: list[str], nested: dict[str, list[str]]) -> Any:
        """A value from the strings sent under its name and, for an object, its dotted parts ("start" for
        `window.start`); _MISSING when the form leaves it to the default."""
        node, optional, mixed = self._unwrap(prop)
        if nested:
            return self._object(node, texts, nested)
        kind = self._kind(node, optional, mixed)
        if kind == "list":
            filled = [t for t in texts if t.strip()]
            if len(filled) == 1 and filled[0].lstrip().startswith("["):
                parsed = _json_or_text(filled[0])
                if isinstance(parsed, list):
                    return parsed
            items = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
            return None if not items and optional else items
        if kind in ("json", "fieldset"):
            if not texts or not texts[-1].strip():
                return None if optional else _MISSING
            return _json_or_text(texts[-1])
        text = texts[-1].replace("\r\n", "\n") if texts else ""
        if text == "" and optional:
            return None
        for choice in _enum(node):  # a select of numbers: "1" means 1 (validation compares exactly)
            if isinstance(choice, bool | int | float) and text == json.dumps(choice):
                return choice
        return text

    def _object(self, node: dict[str, Any], texts: list[str], nested: dict[str, list[str]]) -> dict[str, Any]:
        base = _json_or_text(texts[-1]) if texts and texts[-1].strip() else {}
        value: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        other: dict[str, Any] = extra if isinstance(extra, dict) else {}  # {}: any value, passed on as typed
        heads: dict[str, tuple[list[str], dict[str, list[str]]]] = {}
        for key, strings in nested.items():
            head, _, rest = key.partition(".")
            own, deeper = heads.setdefault(head, ([], {}))
            if rest:
                deeper[rest] = strings
            else:
                own.extend(strings)
        for head, (own, deeper) in heads.items():
            item = self.value(properties.get(head, other), own, deeper)
            if item is not _MISSING:
                value[head] = item
        return value


class _Builder(_Schema):
    def __init__(
        self, defs: dict[str, Any], values: Mapping[str, Any] | None, file_fields: set[str], multi_file_fields: set[str]
    ) -> None:
        super().__init__(defs)
        self.values = values
        self.file_fields = file_fields
        self.multi_file_fields = multi_file_fields

    def build(self, name: str, prop: dict[str, Any], required: bool, default: Any, top: bool = False) -> Field:
        node, optional, mixed = self._unwrap(prop)
        if default is _MISSING and "default" in prop:
            default = prop["default"]
        stored = self._stored(name)
        if stored is not _MISSING:
            default = stored
        fld = Field(
            name=name,
            label=_label(name.rsplit(".", 1)[-1], prop),
            kind="text",
            required=required,
            optional=optional,
            help=str(prop.get("description") or node.get("description") or ""),
        )
        if top and name in self.file_fields:
            kind: Kind = "files" if name in self.multi_file_fields else "file"
        else:
            kind = self._kind(node, optional, mixed)
        fld.kind = kind
        if kind == "fieldset":
            self._fieldset(fld, node, default)
            return fld
        if kind in ("file", "files"):
            fld.hint = _("Choose one or more files.") if kind == "files" else ""
            return fld
        if kind == "checkbox":
            fld.value = "true"  # sent when ticked; a hidden "false" before it is sent either way
        elif kind == "select":
            fld.options = [_text(v) for v in _enum(node)] or ["true", "false"]
        elif kind == "number":
            self._bounds(fld, node)
        elif kind in ("text", "textarea"):
            fld.min_length = node.get("minLength")
            fld.max_length = node.get("maxLength")
            fld.pattern = _html_pattern(node.get("pattern"))
        elif kind == "list":
            items = self._resolve(node.get("items", {}))
            fld.options = [_text(v) for v in _enum(items)]
            fld.hint = "" if fld.options else _("One item per line.")
        elif kind == "json":
            fld.hint = _("As JSON.")
        self._value(fld, default)
        if fld.kind == "text" and ("\n" in fld.value or (fld.max_length or 0) > _TEXTAREA_LENGTH):
            fld.kind = "textarea"  # long text, or line breaks a one-line input would lose
        return fld

    def _fieldset(self, fld: Field, node: dict[str, Any], default: Any) -> None:
        required = set(node.get("required", []))
        parent = default if isinstance(default, dict) else {}
        for child, prop in node.get("properties", {}).items():
            fld.children.append(self.build(f"{fld.name}.{child}", prop, child in required, parent.get(child, _MISSING)))

    def _bounds(self, fld: Field, node: dict[str, Any]) -> None:
        integer = node.get("type") == "integer"
        low, high = node.get("minimum"), node.get("maximum")
        if isinstance(node.get("exclusiveMinimum"), int | float):
            ex = node["exclusiveMinimum"] + (1 if integer and isinstance(node["exclusiveMinimum"], int) else 0)
            low = ex if low is None else max(low, ex)
        if isinstance(node.get("exclusiveMaximum"), int | float):
            ex = node["exclusiveMaximum"] - (1 if integer and isinstance(node["exclusiveMaximum"], int) else 0)
            high = ex if high is None else min(high, ex)
        fld.minimum, fld.maximum = low, high
        multiple = node.get("multipleOf")
        fld.step = "1" if integer else "any"
        if isinstance(multiple, int | float) and multiple > 0 and (not integer or isinstance(multiple, int)):
            ratio = (low or 0) / multiple
            if math.isclose(ratio, round(ratio), abs_tol=1e-9):  # the browser counts steps from the minimum
                fld.step = _text(multiple)

    # -- values ------------------------------------------------------------------------------------
    def _value(self, fld: Field, default: Any) -> None:
        submitted = self._submitted(fld.name)
        if submitted is not None:
            if fld.kind == "checkbox":
                fld.checked = bool(submitted) and submitted[-1].strip().lower() in _TRUE
            elif fld.kind == "list":
                fld.value = "\n".join(s for s in submitted if s.strip() or len(submitted) == 1)
            elif fld.kind == "datetime" and submitted:
                fld.value, fld.step = _datetime_local(submitted[-1])
            elif submitted:
                fld.value = submitted[-1]
            return
        if default is _MISSING or default is None:
            return
        if fld.kind == "checkbox":
            fld.checked = bool(default)
        elif fld.kind == "datetime":
            fld.value, fld.step = _datetime_local(default)
        elif fld.kind == "list":
            fld.value = _lines(default, bool(fld.options))
        elif fld.kind == "json":
            fld.value = json.dumps(default, indent=2, ensure_ascii=False)
        else:
            fld.value = _text(default)

    def _submitted(self, name: str) -> list[str] | None:
        """The strings posted for `name` (line breaks as typed, not as sent), or None when none were."""
        if self.values is None or name not in self.values:
            return None
        getlist = getattr(self.values, "getlist", None)
        items = list(getlist(name)) if callable(getlist) else [self.values[name]]
        texts = [item.replace("\r\n", "\n") for item in items if isinstance(item, str)]
        return texts if texts or callable(getlist) else None

    def _stored(self, name: str) -> Any:
        """A parameter value (not a string) given for `name`, or _MISSING."""
        if self.values is None or name not in self.values or callable(getattr(self.values, "getlist", None)):
            return _MISSING
        value = self.values[name]
        return _MISSING if isinstance(value, str) else value


def _enum(node: dict[str, Any]) -> list[Any]:
    if isinstance(node.get("enum"), list):
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    return []


def _label(name: str, prop: dict[str, Any]) -> str:
    auto = name.replace("_", " ").title()
    title = prop.get("title")
    return title if isinstance(title, str) and title and title != name.title().replace("_", " ") else auto


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _text(value: Any) -> str:
    """A scalar as an input shows it: strings as they are, the rest as JSON (true, 3, 0.5)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _lines(value: Any, options: bool) -> str:
    """A list as one item per line; as a JSON array when lines cannot hold the items exactly."""
    if not isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    items = [_text(item) for item in value]
    lossless = all(item and item == item.strip() and "\n" not in item and "\r" not in item for item in items)
    if options or (lossless and not (items and items[0].startswith("["))):
        return "\n".join(items)
    return json.dumps(value, ensure_ascii=False)


def _datetime_local(value: Any) -> tuple[str, str | None]:
    """A datetime as a datetime-local input wants it (YYYY-MM-DDTHH:MM, seconds only when there are some), and
    the step the input needs to accept it. A time zone cannot be shown and is dropped."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value), None
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}", "0.001"
    if moment.second:
        return moment.strftime("%Y-%m-%dT%H:%M:%S"), "1"
    return moment.strftime("%Y-%m-%dT%H:%M"), None


_PYTHON_ONLY = ("(?P", "(?#", "(?i", "(?m", "(?s", "(?x", "(?a", "(?u", "(?L", "\\A", "\\Z", "\\z")


def _html_pattern(pattern: Any) -> str | None:
    """A schema pattern (found anywhere in the value, Python syntax) as an HTML pattern (must match the whole
    value, JavaScript syntax). None when it uses Python-only syntax: the server checks it anyway."""
    if not isinstance(pattern, str) or not pattern or any(token in pattern for token in _PYTHON_ONLY):
        return None
    inner = pattern[1:-1]
    if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$") and "|" not in pattern:
        return inner
    return f".*(?:{pattern}).*"
