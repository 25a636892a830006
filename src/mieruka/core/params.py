"""Task signatures become pydantic models: one validation path for the API, the form and the CLI."""

from __future__ import annotations

import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Annotated, Any, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from ..errors import ConfigError, ValidationError
from ..i18n import ENGLISH, N_, _, ngettext, supported, text
from .job import Job


class FileRef(BaseModel):
    """How an uploaded file appears in stored job parameters."""

    model_config = ConfigDict(extra="forbid")
    upload_id: str
    filename: str
    size: int
    content_type: str = "application/octet-stream"


class File:
    """An uploaded file, as a task function receives it. Annotate a parameter `mieruka.File`
    (or `list[mieruka.File]`) to accept uploads."""

    def __init__(self, path: Path, filename: str, size: int, content_type: str) -> None:
        self.path = path
        self.filename = filename
        self.size = size
        self.content_type = content_type

    @property
    def name(self) -> str:
        return self.filename

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.path.read_text(encoding, errors)

    def open(self, mode: str = "rb") -> IO[Any]:
        return self.path.open(mode)

    def __repr__(self) -> str:
        return f"File({self.filename!r}, {self.size} bytes)"


def _is_job_handle(annotation: Any) -> bool:
    # mieruka.Pipeline is a job handle too; it says so with a marker instead of being imported here.
    return annotation is Job or getattr(annotation, "__mieruka_job_handle__", False) is True


def _is_job_annotation(annotation: Any) -> bool:
    if _is_job_handle(annotation):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_job_handle(arg) for arg in get_args(annotation))
    return False


def _replace_files(annotation: Any) -> tuple[Any, bool]:
    """Swap `File` for `FileRef` anywhere in an annotation; report whether one was found."""
    if annotation is File:
        return FileRef, True
    origin = get_origin(annotation)
    if origin is None:
        return annotation, False
    args = get_args(annotation)
    if origin is Annotated:
        inner, found = _replace_files(args[0])
        return (Annotated[(inner, *args[1:])] if found else annotation), found
    new_args, any_found = [], False
    for arg in args:
        new, found = _replace_files(arg)
        new_args.append(new)
        any_found = any_found or found
    if not any_found:
        return annotation, False
    if origin is Union or origin is types.UnionType:
        return Union[tuple(new_args)], True  # noqa: UP007
    if origin in (list, typing.List):  # noqa: UP006
        return list[new_args[0]], True  # type: ignore[valid-type]
    raise ConfigError(f"files are supported as File, list[File] or File | None, not {annotation}")


def _is_list(annotation: Any) -> bool:
    """Whether the annotation (under Annotated and Optional) is a list."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_list(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_is_list(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin in (list, typing.List)  # noqa: UP006


def _described(annotation: Any) -> bool:
    """Whether `Annotated[..., Field(description=...)]` describes the parameter already: what the
    code says wins over the docstring."""
    return get_origin(annotation) is Annotated and any(
        isinstance(meta, FieldInfo) and meta.description is not None for meta in annotation.__metadata__
    )


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {param: help}) from a docstring in any style docstring-parser reads: NumPy
    ("Parameters" underlined), Google ("Args:"), reST (":param x:") or Epydoc ("@param x:").

    The description is the short description and the long one, without the sections; the other
    sections (Returns, Raises, ...) are left out of both. A help's lines are joined into one. The
    style that finds the most sections wins; a docstring none can read is all description (the
    NumPy reader accepts any text).

    A section named by a language's tag (`ja:`) is the description and help in that language, read
    the same way; then each is an i18n.Localized, the docstring's own text its English."""
    if not doc:
        return "", {}
    rest, sections = _language_sections(inspect.cleandoc(doc))
    description, helps = _read(rest)
    if not sections:
        return description, helps
    descriptions: dict[str, str] = {ENGLISH: description} if description else {}
    by_param: dict[str, dict[str, str]] = {name: {ENGLISH: help} for name, help in helps.items()}
    for tag, body in sections.items():
        translated, translated_helps = _read(body)
        if translated:
            descriptions[tag] = translated
        for name, help in translated_helps.items():
            by_param.setdefault(name, {})[tag] = help
    return (
        text(descriptions) if descriptions else "",
        {name: text(texts) for name, texts in by_param.items()},
    )


# What every style's sections need: a colon (Google's "Args:", reST's ":param"), an at sign
# (Epydoc) or a line of dashes (NumPy's underline). A docstring without any is all description.
_MAY_HAVE_SECTIONS = re.compile(r"[:@]|^[ \t]*-+[ \t]*$", re.M)


def _read(doc: str) -> tuple[str, dict[str, str]]:
    if not _MAY_HAVE_SECTIONS.search(doc):
        return doc.strip(), {}  # docstring-parser's answer, without its import and its four parses
    import docstring_parser  # for the tasks whose docstring may have sections

    # The newline lets a text that starts with its section ("Args:", no description) be Google's.
    parsed = docstring_parser.parse("\n" + doc)
    helps = {param.arg_name: " ".join(param.description.split()) for param in parsed.params if param.description}
    return (parsed.description or "").strip(), helps


# A section of a docstring naming one of our languages, its text indented below it:
#     ja:
#         1日の入院数を数えます。
_SECTION = re.compile(
    r"^(?P<tag>[A-Za-z]{2,3}(?:[-_][A-Za-z]{2,4})?):[ \t]*\n(?P<body>(?:[ \t]+\S.*\n?|[ \t]*\n)+)", re.M
)


def _language_sections(doc: str) -> tuple[str, dict[str, str]]:
    """The docstring without its sections per language, and their texts by language tag."""
    found: dict[str, str] = {}

    def take(match: re.Match[str]) -> str:
        tag = supported(match["tag"])
        if tag is None or tag == ENGLISH:
            return match[0]  # not a language of ours: a section of the docstring's own
        found[tag] = textwrap.dedent(match["body"]).strip()
        return ""

    return _SECTION.sub(take, doc + "\n").strip(), found


def _with_help(default: Any, text: str | None, annotation: Any) -> Any:
    """A parameter's default, carrying its docstring help unless the code describes it already."""
    if not text or _described(annotation):
        return default
    if not isinstance(default, FieldInfo):
        return Field(default, description=text)
    if default.description is None:  # `x: list[int] = Field(default_factory=list)`
        return FieldInfo.merge_field_infos(default, description=text)
    return default


def _with_label(default: Any, label: str | None) -> Any:
    """A parameter's default, carrying the label given for its form field (the schema's title)."""
    if not label:
        return default
    if not isinstance(default, FieldInfo):
        return Field(default, title=label)
    return FieldInfo.merge_field_infos(default, title=label)


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def nested_fields(schema: dict[str, Any]) -> set[str]:
    """The dotted names of the fields of the parameters' models (`window.start`), as forms name them."""
    defs = schema.get("$defs", {})
    found: set[str] = set()

    def objects(node: dict[str, Any], seen: frozenset[str]) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref not in seen:
            yield from objects(defs.get(ref.rsplit("/", 1)[-1], {}), seen | {ref})
        for branch in node.get("anyOf", []) + node.get("allOf", []):
            yield from objects(branch, seen)
        if isinstance(node.get("properties"), dict):
            yield node, seen

    def walk(prefix: str, node: dict[str, Any], seen: frozenset[str]) -> None:
        for model, inside in objects(node, seen):
            for key, prop in model["properties"].items():
                found.add(f"{prefix}.{key}")
                walk(f"{prefix}.{key}", prop, inside)

    for name, prop in schema.get("properties", {}).items():
        walk(name, prop, frozenset())
    return found


def _by_depth(given: Mapping[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """Texts keyed by a parameter's name, and those keyed by a field of its model (`window.start`)."""
    top = {key: text for key, text in (given or {}).items() if "." not in key}
    return top, {key: text for key, text in (given or {}).items() if "." in key}


class Signature:
    """The parameters of one task function, as a pydantic model plus what the runner must inject."""

    def __init__(
        self,
        func: Callable[..., Any],
        name: str,
        help: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """`help`: parameters' help given apart from the docstring; `labels`: their form fields'
        labels, else made from their names (texts by language, i18n.text)."""
        self.func = func
        self.description, helps = parse_docstring(func.__doc__)
        params = [p for p in inspect.signature(func).parameters.values() if p.kind not in _VARIADIC]
        declared = [p.name for p in params]
        for what, given in (("help", help), ("label", labels)):
            if not all(isinstance(key, str) for key in given or {}):
                raise ConfigError(f"task {name!r}: {what} is keyed by the parameters' names (texts)")
            unknown = sorted({key.split(".", 1)[0] for key in given or {}} - set(declared))
            if unknown:
                raise ConfigError(
                    f"task {name!r}: {what} for {', '.join(map(repr, unknown))}, which "
                    f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
                    f"(its parameters: {', '.join(declared) or 'none'})"
                )
        # A field of a parameter's model (`window.start`) is labelled and helped on the form only.
        given_help, self.nested_help = _by_depth(help)
        labels, self.nested_labels = _by_depth(labels)
        helps = {**helps, **given_help}
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as exc:
            raise ConfigError(f"cannot read the type hints of task {name!r}: {exc}") from exc
        self.job_param: str | None = None
        self.file_fields: set[str] = set()
        self.multi_file_fields: set[str] = set()
        fields: dict[str, Any] = {}
        for param in params:
            annotation = hints.get(param.name, Any)
            if _is_job_annotation(annotation):
                self.job_param = param.name
                continue
            annotation, has_file = _replace_files(annotation)
            if has_file:
                self.file_fields.add(param.name)
                if _is_list(annotation):
                    self.multi_file_fields.add(param.name)
            default = ... if param.default is inspect.Parameter.empty else param.default
            default = _with_label(_with_help(default, helps.get(param.name), annotation), labels.get(param.name))
            fields[param.name] = (annotation, default)
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
        try:
            self.model: type[BaseModel] = pydantic.create_model(f"{_camel(name)}Params", __config__=config, **fields)
        except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
            raise ConfigError(f"task {name!r} has a parameter type mieruka cannot validate: {exc}") from exc
        if self.nested_labels or self.nested_help:
            fields_of = nested_fields(self.model.model_json_schema())
            for what, given in (("help", self.nested_help), ("label", self.nested_labels)):
                unknown = sorted(set(given) - fields_of)
                if unknown:
                    raise ConfigError(
                        f"task {name!r}: {what} for {', '.join(map(repr, unknown))}, which no parameter's "
                        f"model has (its fields: {', '.join(sorted(fields_of)) or 'none'})"
                    )

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    def validate(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Checked parameters in their JSON form, or ValidationError naming each bad field."""
        try:
            model = self.model.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise validation_error(exc) from None
        checked: dict[str, Any] = model.model_dump(mode="json")
        for name, value in checked.items():
            if holds_nul(value):
                # PostgreSQL cannot store it; every store refuses it alike.
                raise ValidationError(
                    _("%(field)s: text must not contain a NUL character", field=name),
                    [{"field": name, "message": _("contains a NUL character")}],
                )
        return checked

    def bind(self, params: dict[str, Any], open_file: Callable[[FileRef], File]) -> dict[str, Any]:
        """Keyword arguments for the function: typed values, files opened, from stored params."""
        model = self.model.model_validate(params)
        kwargs: dict[str, Any] = {}
        for name in type(model).model_fields:
            value = getattr(model, name)
            if name in self.file_fields:
                value = _open_files(value, open_file)
            kwargs[name] = value
        return kwargs


def holds_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character in any string or key."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _open_files(value: Any, open_file: Callable[[FileRef], File]) -> Any:
    if isinstance(value, FileRef):
        return open_file(value)
    if isinstance(value, list):
        return [_open_files(item, open_file) for item in value]
    return value


def validation_error(exc: pydantic.ValidationError) -> ValidationError:
    fields = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or "(body)"
        fields.append({"field": loc, "message": _message(err)})
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return ValidationError(_("invalid parameters: %(errors)s", errors=summary), fields)


# pydantic's messages that a task's form meets, in words a translator can reorder. In English (and for
# any other error) pydantic's own message is kept: it formats the numbers of its limits its own way.
_MESSAGES = {
    "missing": N_("Field required"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "float_type": N_("Input should be a valid number"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "finite_number": N_("Input should be a finite number"),
    "bool_type": N_("Input should be a valid boolean"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "string_type": N_("Input should be a valid string"),
    "list_type": N_("Input should be a valid list"),
    "dict_type": N_("Input should be a valid dictionary"),
    "date_type": N_("Input should be a valid date"),
    "datetime_type": N_("Input should be a valid datetime"),
    "date_past": N_("Date should be in the past"),
    "date_future": N_("Date should be in the future"),
    "datetime_past": N_("Input should be in the past"),
    "datetime_future": N_("Input should be in the future"),
    "date_parsing": N_("Input should be a valid date in the format YYYY-MM-DD, %(error)s"),
    "date_from_datetime_parsing": N_("Input should be a valid date or datetime, %(error)s"),
    "datetime_parsing": N_("Input should be a valid datetime, %(error)s"),
    "datetime_from_date_parsing": N_("Input should be a valid datetime or date, %(error)s"),
    "json_invalid": N_("Invalid JSON: %(error)s"),
    "greater_than": N_("Input should be greater than %(gt)s"),
    "greater_than_equal": N_("Input should be greater than or equal to %(ge)s"),
    "less_than": N_("Input should be less than %(lt)s"),
    "less_than_equal": N_("Input should be less than or equal to %(le)s"),
    "multiple_of": N_("Input should be a multiple of %(multiple_of)s"),
    "string_pattern_mismatch": N_("String should match pattern '%(pattern)s'"),
    "literal_error": N_("Input should be %(expected)s"),
    "enum": N_("Input should be %(expected)s"),
}


def _message(err: Any) -> str:
    """One error of pydantic's in the current request's language."""
    kind, ctx = err["type"], {k: _shown(v) for k, v in (err.get("ctx") or {}).items()}
    if kind == "extra_forbidden":
        return _("unknown parameter")
    try:
        if kind in _MESSAGES:
            text = _(_MESSAGES[kind], **ctx)
            return str(err["msg"]) if text == _MESSAGES[kind] % ctx else text
        return _length(kind, ctx) or str(err["msg"])
    except (KeyError, ValueError, TypeError):  # a context this pydantic does not give
        return str(err["msg"])


def _length(kind: str, ctx: dict[str, Any]) -> str | None:
    """A string's or list's length error (the same words as pydantic's in English)."""
    if kind == "string_too_short":
        return ngettext(
            "String should have at least %(num)d character",
            "String should have at least %(num)d characters",
            ctx["min_length"],
        )
    if kind == "string_too_long":
        return ngettext(
            "String should have at most %(num)d character",
            "String should have at most %(num)d characters",
            ctx["max_length"],
        )
    if kind == "too_short" and ctx.get("field_type") == "List":
        return ngettext(
            "List should have at least %(num)d item after validation, not %(actual)d",
            "List should have at least %(num)d items after validation, not %(actual)d",
            ctx["min_length"],
            actual=ctx["actual_length"],
        )
    if kind == "too_long" and ctx.get("field_type") == "List":
        return ngettext(
            "List should have at most %(num)d item after validation, not %(actual)d",
            "List should have at most %(num)d items after validation, not %(actual)d",
            ctx["max_length"],
            actual=ctx["actual_length"],
        )
    return None


def _shown(value: Any) -> Any:
    """A limit as people read it: 10.0 as 10."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", name) if part) or "Task"
