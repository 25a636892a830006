"""The task form: fields built from the parameters' JSON schema (web.ui.forms), the HTML of
_form_fields.html, and the round trip browser → form post → form_params (the same schema read back) → the
API's validation."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from mieruka import i18n
from mieruka.core.task import Task, make_task
from mieruka.demo import app as demo_app
from mieruka.web.ui.forms import Field as FormField
from mieruka.web.ui.forms import form_fields, form_params, unplaced_errors
from tests.jobs import Window
from tests.jobs import app as jobs_app

TEMPLATES = Path(__file__).parents[2] / "src" / "mieruka" / "web" / "templates"


# -- a task with the awkward cases ---------------------------------------------------------------------
class Inner(BaseModel):
    label: str = "in"
    tags: list[int] = [1, 2]
    on: bool = True


class Outer(BaseModel):
    inner: Inner = Inner()
    when: date | None = None


def edge(  # type: ignore[no-untyped-def]  # `anything` is left unannotated on purpose
    maybe: int | None = None,
    tri: bool | None = None,
    level: Literal[1, 2, 3] = 2,
    picks: list[Literal["a", "b", "c"]] = ["a", "c"],  # noqa: B006
    notes: str = "\nline one\nline two",
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}\d+$", min_length=3, max_length=10)] = "AB1",
    essay: Annotated[str, Field(max_length=5000)] = "",
    odd: Annotated[int, Field(gt=0, lt=100, multiple_of=5)] = 5,
    fives: Annotated[int, Field(ge=0, multiple_of=5)] = 10,
    scale: Annotated[float, Field(gt=0)] = 1.5,
    meta: dict[str, int] = {"x": 1},  # noqa: B006
    spaced: list[str] = [" padded ", "[x]"],  # noqa: B006
    empty: list[str] = [],  # noqa: B006
    outer: Outer = Outer(),
    optional_model: Window | None = None,
    stamp: datetime = datetime(2026, 1, 2, 3, 4, 5),
    titled: Annotated[int, Field(title="Number of widgets")] = 1,
    made: list[str] = Field(default_factory=lambda: ["f", "g"]),
    anything="free",  # no annotation: Any
    *,
    needed: str,
) -> None:
    """Every awkward case.

    Args:
        maybe: Perhaps a number.
        outer: Nested twice.
    """


EDGE = make_task(edge)
EDGE_FILLED = {"needed": "yes"}


def task(name: str) -> Task:
    if name == "edge":
        return EDGE
    for app in (jobs_app, demo_app):
        if name in app.tasks:
            return app.get_task(name)
    raise KeyError(name)


def by_name(fields: list[FormField]) -> dict[str, FormField]:
    return {f.name: f for top in fields for f in top.walk()}


# -- form_fields ---------------------------------------------------------------------------------------
def test_echo_types_kinds_and_defaults() -> None:
    fields = form_fields(task("echo_types"))
    assert [f.name for f in fields] == [
        "text",
        "count",
        "ratio",
        "flag",
        "choice",
        "colour",
        "day",
        "moment",
        "names",
        "window",
    ]
    f = by_name(fields)
    assert {name: fl.kind for name, fl in f.items()} == {
        "text": "text",
        "count": "number",
        "ratio": "number",
        "flag": "checkbox",
        "choice": "select",
        "colour": "select",
        "day": "date",
        "moment": "datetime",
        "names": "list",
        "window": "fieldset",
        "window.start": "number",
        "window.end": "number",
    }
    assert {name: fl.value for name, fl in f.items() if name != "flag"} == {
        "text": "x",
        "count": "1",
        "ratio": "0.5",
        "choice": "hg38",
        "colour": "red",
        "day": "2026-01-01",
        "moment": "2026-01-01T12:00",
        "names": "a",
        "window": "",
        "window.start": "0",
        "window.end": "10",
    }
    assert f["flag"].checked is False and f["flag"].value == "true"
    assert f["count"].step == "1" and f["ratio"].step == "any" and f["moment"].step is None
    assert f["choice"].options == ["hg38", "mm10"] and f["colour"].options == ["red", "blue"]
    assert not f["choice"].blank_option and f["choice"].selected == ["hg38"]
    assert [c.label for c in f["window"].children] == ["Start", "End"]
    assert all(not fl.required and not fl.optional and fl.error is None for fl in f.values())
    assert f["names"].hint == "One item per line."
    assert f["window.start"].id == "param-window-start" and f["moment"].input_type == "datetime-local"


def test_required_parameters_and_the_inputs_the_browser_must_fill() -> None:
    f = by_name(form_fields(task("add")))
    assert (f["a"].required, f["a"].input_required, f["a"].value) == (True, True, "")
    assert (f["b"].required, f["b"].value) == (False, "2")
    assert f["b"].input_required  # a number input may not be sent empty, default or not
    files = by_name(form_fields(task("read_upload")))
    document, extra = files["document"], files["extra"]
    assert (document.kind, document.required, document.input_required) == ("file", True, True)
    assert (extra.kind, extra.required, extra.input_required) == ("files", False, False)
    word = by_name(form_fields(task("word_count")))
    assert (word["document"].kind, word["document"].optional, word["document"].input_required) == ("file", True, False)
    assert word["document"].help == "A text file."  # not FileRef's docstring
    assert by_name(form_fields(EDGE))["needed"].input_required


def test_bounds_and_help_from_annotated_fields_and_docstrings() -> None:
    f = by_name(form_fields(task("hello")))
    assert (f["times"].minimum, f["times"].maximum, f["times"].step) == (1, 10, "1")
    assert f["times"].help == "How many greetings, 1 to 10." and f["name"].help == "Who to greet."
    t = by_name(form_fields(task("all_the_types")))
    assert [c.name for c in t["thresholds"].children] == ["thresholds.low", "thresholds.high"]
    low = t["thresholds.low"]
    assert (low.kind, low.minimum, low.maximum, low.step, low.value) == ("number", 0, 1, "any", "0.2")
    assert low.help == "Below this is low." and t["thresholds.high"].help == "Above this is high."
    assert t["samples"].value == "A1\nB2" and t["samples"].kind == "list"
    assert (t["reference"].kind, t["reference"].options) == ("select", ["hg38", "mm10"])
    assert t["strict"].kind == "checkbox" and not t["strict"].checked and t["thresholds"].help == ""


def test_awkward_parameters() -> None:
    f = by_name(form_fields(EDGE))
    assert (f["maybe"].kind, f["maybe"].optional, f["maybe"].value, f["maybe"].input_required) == (
        "number",
        True,
        "",
        False,
    )
    assert f["maybe"].help == "Perhaps a number." and f["outer"].help == "Nested twice."
    assert (f["tri"].kind, f["tri"].options, f["tri"].blank_option) == ("select", ["true", "false"], True)
    assert (f["level"].kind, f["level"].options, f["level"].value) == ("select", ["1", "2", "3"], "2")
    assert (f["picks"].kind, f["picks"].options, f["picks"].selected) == ("list", ["a", "b", "c"], ["a", "c"])
    assert (f["notes"].kind, f["notes"].value) == ("textarea", "\nline one\nline two")
    assert (f["code"].kind, f["code"].min_length, f["code"].max_length) == ("text", 3, 10)
    assert f["code"].pattern == r"[A-Z]{2}\d+"
    assert f["essay"].kind == "textarea" and f["essay"].max_length == 5000
    assert (f["odd"].minimum, f["odd"].maximum, f["odd"].step) == (1, 99, "1")  # 5s counted from 1 would be wrong
    assert (f["fives"].minimum, f["fives"].step) == (0, "5")
    assert (f["scale"].minimum, f["scale"].step) == (0, "any")
    assert f["meta"].kind == "json" and json.loads(f["meta"].value) == {"x": 1}
    assert f["spaced"].kind == "list" and json.loads(f["spaced"].value) == [" padded ", "[x]"]
    assert f["empty"].value == ""
    assert f["outer.inner.tags"].kind == "list" and f["outer.inner.tags"].value == "1\n2"
    assert f["outer.inner.on"].checked and f["outer.inner.label"].value == "in"
    assert (f["outer.when"].kind, f["outer.when"].optional, f["outer.when"].value) == ("date", True, "")
    assert (f["optional_model"].kind, f["optional_model"].optional, f["optional_model"].value) == ("json", True, "")
    assert (f["stamp"].value, f["stamp"].step) == ("2026-01-02T03:04:05", "1")
    assert f["titled"].label == "Number of widgets" and f["optional_model"].label == "Optional Model"
    assert f["made"].value == "f\ng"  # a default factory is not in the JSON schema
    assert (f["anything"].kind, f["anything"].value) == ("text", "free")
    assert (f["needed"].required, f["needed"].value) == (True, "")


def test_errors_go_on_their_fields_and_the_rest_is_left_for_the_page() -> None:
    errors = {
        "count": "not a number",
        "window.start": "too small",
        "names.1": "bad name",
        "window": "odd",
        "zzz": "unknown parameter",
        "": "whole form",
    }
    fields = form_fields(task("echo_types"), errors=errors)
    f = by_name(fields)
    assert f["count"].error == "not a number" and f["window.start"].error == "too small"
    assert f["names"].error == "item 2: bad name" and f["window"].error == "odd"
    assert f["window.end"].error is None and f["text"].error is None
    assert unplaced_errors(fields, errors) == {"zzz": "unknown parameter", "": "whole form"}
    two = by_name(form_fields(task("echo_types"), errors={"names.0": "a", "names.2": "b"}))
    assert two["names"].error == "item 1: a; item 3: b"


def test_a_rejected_form_comes_back_as_typed() -> None:
    values = {
        "count": "many",
        "flag": "true",
        "names": "x\r\ny",
        "window.start": "-",
        "colour": "blue",
        "moment": "2026-05-06T07:08",
    }
    f = by_name(form_fields(task("echo_types"), values, {"count": "not a number"}))
    assert f["count"].value == "many" and f["count"].error == "not a number"
    assert f["flag"].checked and f["names"].value == "x\ny" and f["window.start"].value == "-"
    assert f["colour"].selected == ["blue"] and f["moment"].value == "2026-05-06T07:08"
    assert f["text"].value == "x" and f["window.end"].value == "10"  # not posted: the default
    form = FormData([("flag", "false"), ("names", "p"), ("names", "q"), ("text", "")])
    g = by_name(form_fields(task("echo_types"), form))
    assert not g["flag"].checked and g["names"].value == "p\nq" and g["text"].value == ""
    ticked = by_name(form_fields(task("echo_types"), FormData([("flag", "false"), ("flag", "true")])))
    assert ticked["flag"].checked


def test_stored_parameters_prefill_the_form() -> None:
    params = {
        "text": "hi",
        "count": 3,
        "ratio": 0.25,
        "flag": True,
        "choice": "mm10",
        "colour": "blue",
        "day": "2026-03-04",
        "moment": "2026-03-04T05:06:00",
        "names": ["p", "q"],
        "window": {"start": 4, "end": 8},
    }
    f = by_name(form_fields(task("echo_types"), params))
    assert {name: fl.value for name, fl in f.items() if name not in ("flag", "window")} == {
        "text": "hi",
        "count": "3",
        "ratio": "0.25",
        "choice": "mm10",
        "colour": "blue",
        "day": "2026-03-04",
        "moment": "2026-03-04T05:06",
        "names": "p\nq",
        "window.start": "4",
        "window.end": "8",
    }
    assert f["flag"].checked
    e = by_name(form_fields(EDGE, {"maybe": None, "meta": {"y": 2}, "tri": False, "optional_model": {"start": 1}}))
    assert f["flag"].checked and e["maybe"].value == "" and json.loads(e["meta"].value) == {"y": 2}
    assert e["tri"].value == "false" and json.loads(e["optional_model"].value) == {"start": 1}


# -- HTML ----------------------------------------------------------------------------------------------
@dataclass
class Control:
    """A form control as a browser sees it."""

    tag: str
    attrs: dict[str, str | None]
    value: str = ""
    checked: bool = False
    options: list[list[Any]] = field(default_factory=list)  # [value, selected]
    file: tuple[str, bytes, str] | None = None

    @property
    def name(self) -> str:
        return self.attrs.get("name") or ""

    @property
    def type(self) -> str:
        return (self.attrs.get("type") or "text") if self.tag == "input" else self.tag

    def select(self, *values: str) -> None:
        for option in self.options:
            option[1] = option[0] in values


class Page(HTMLParser):
    """Every element (tag, attributes), the text of <small> elements by id, and the form controls."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.controls: list[Control] = []
        self.smalls: dict[str, str] = {}
        self._small: str | None = None
        self._open: Control | None = None
        self._option: list[Any] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attr_list)
        self.elements.append((tag, attrs))
        if tag == "input":
            self.controls.append(Control(tag, attrs, attrs.get("value") or "", "checked" in attrs))
        elif tag in ("select", "textarea"):
            self._open = Control(tag, attrs)
            self.controls.append(self._open)
        elif tag == "option" and self._open is not None:
            self._option = [attrs.get("value") or "", "selected" in attrs]
            self._open.options.append(self._option)
        elif tag == "small":
            self._small = attrs.get("id") or f"#{len(self.smalls)}"
            self.smalls[self._small] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("select", "textarea"):
            self._open = None
        elif tag == "small":
            self._small = None

    def handle_data(self, data: str) -> None:
        if self._open is not None and self._open.tag == "textarea":
            self._open.value += data
        if self._small is not None:
            self.smalls[self._small] += data

    def control(self, name: str, type_: str | None = None) -> Control:
        found = [c for c in self.controls if c.name == name and (type_ is None or c.type == type_)]
        assert len(found) == 1, (name, found)
        return found[0]

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def post(self) -> list[tuple[str, Any]]:
        """What a browser sends for the form, in document order: a textarea loses the line break right
        after its tag and sends CRLF line breaks; an unticked checkbox sends nothing; an empty file input
        sends a part with no file name."""
        data: list[tuple[str, Any]] = []
        for c in self.controls:
            if not c.name or "disabled" in c.attrs:
                continue
            if c.type == "checkbox":
                if c.checked:
                    data.append((c.name, c.attrs.get("value") or "on"))
            elif c.type == "file":
                data.append((c.name, c.file or ("", b"", "application/octet-stream")))
            elif c.tag == "select":
                chosen = [o[0] for o in c.options if o[1]]
                if not chosen and "multiple" not in c.attrs and c.options:
                    chosen = [c.options[0][0]]
                data.extend((c.name, v) for v in chosen)
            elif c.tag == "textarea":
                text = c.value[1:] if c.value.startswith("\n") else c.value
                data.append((c.name, text.replace("\r\n", "\n").replace("\n", "\r\n")))
            else:
                data.append((c.name, c.value))
        return data


def render(fields: list[FormField], autoescape: bool = True) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(i18n.gettext_, i18n.ngettext_, newstyle=True)  # type: ignore[attr-defined]
    template = env.from_string(
        '{% from "_form_fields.html" import render_fields %}<form>{{ render_fields(fields) }}</form>'
    )
    return template.render(fields=fields)


def assert_well_formed(html: str) -> Page:
    """No inline script or style; ids unique; every label and aria-describedby points at an element."""
    page = Page(html)
    assert "<script" not in html.lower() and "style=" not in html.lower()
    assert not [a for _, attrs in page.elements for a in attrs if a.startswith("on")], "inline event handler"
    ids = [attrs["id"] for _, attrs in page.elements if attrs.get("id")]
    assert len(ids) == len(set(ids)), ids
    for label in page.find("label"):
        assert label.get("for") in ids, label
    for _, attrs in page.elements:
        for target in (attrs.get("aria-describedby") or "").split():
            assert target in ids, (target, attrs)
    return page


def test_inputs_for_echo_types() -> None:
    html = render(form_fields(task("echo_types")))
    page = assert_well_formed(html)
    types = {c.name: c.type for c in page.controls if c.type != "hidden"}
    assert types == {
        "text": "text",
        "count": "number",
        "ratio": "number",
        "flag": "checkbox",
        "choice": "select",
        "colour": "select",
        "day": "date",
        "moment": "datetime-local",
        "names": "textarea",
        "window.start": "number",
        "window.end": "number",
    }
    names = [c.name for c in page.controls]
    assert names.index("flag") == [i for i, c in enumerate(page.controls) if c.type == "hidden"][0]
    assert page.control("flag", "hidden").value == "false" and page.control("flag", "checkbox").value == "true"
    assert not page.control("flag", "checkbox").checked
    assert page.control("count").attrs["step"] == "1" and page.control("ratio").attrs["step"] == "any"
    assert "required" in page.control("count").attrs and "required" not in page.control("text").attrs
    assert [o for o in page.control("choice").options if o[1]] == [["hg38", True]]
    assert page.control("names").value == "\na"  # the browser drops the first line break
    assert page.control("moment").value == "2026-01-01T12:00"
    assert page.find("fieldset", id="param-window") and "<legend>Window</legend>" in html
    assert page.find("label", **{"for": "param-window-start"})


def test_bounds_help_and_errors_in_html() -> None:
    page = assert_well_formed(render(form_fields(task("hello"), errors={"times": "too many <b>"})))
    times = page.control("times").attrs
    assert (times["type"], times["min"], times["max"], times["step"]) == ("number", "1", "10", "1")
    assert times["aria-invalid"] == "true" and times["aria-describedby"] == "param-times-error param-times-help"
    assert page.find("small", id="param-times-error", **{"class": "field-error"})
    assert page.smalls["param-times-error"] == "too many <b>"
    assert page.smalls["param-times-help"] == "How many greetings, 1 to 10."
    name = page.control("name").attrs
    assert "aria-invalid" not in name and name["aria-describedby"] == "param-name-help"
    edge_page = assert_well_formed(render(form_fields(EDGE)))
    code = edge_page.control("code").attrs
    assert (code["minlength"], code["maxlength"], code["pattern"]) == ("3", "10", r"[A-Z]{2}\d+")
    assert edge_page.control("essay").type == "textarea" and edge_page.control("essay").attrs["maxlength"] == "5000"


def test_files_selects_and_fieldsets_in_html() -> None:
    page = assert_well_formed(render(form_fields(task("read_upload"))))
    document, extra = page.control("document"), page.control("extra")
    assert document.type == "file" and "required" in document.attrs and "multiple" not in document.attrs
    assert extra.type == "file" and "multiple" in extra.attrs and "required" not in extra.attrs
    assert page.find("small", **{"class": "file-info", "data-for": "document"})
    assert page.find("small", **{"class": "file-info", "data-for": "extra"})
    edge_page = assert_well_formed(render(form_fields(EDGE)))
    tri = edge_page.control("tri")
    assert tri.options == [["", True], ["true", False], ["false", False]]
    picks = edge_page.control("picks", "select")
    assert "multiple" in picks.attrs and picks.options == [["a", True], ["b", False], ["c", True]]
    assert edge_page.control("picks", "hidden").value == ""
    assert [a.get("id") for a in edge_page.find("fieldset")] == ["param-outer", "param-outer-inner"]
    assert edge_page.control("outer.inner.on", "checkbox").checked
    assert edge_page.control("notes").value == "\n\nline one\nline two"


@pytest.mark.parametrize("autoescape", [True, False])
def test_values_are_escaped_with_or_without_autoescape(autoescape: bool) -> None:
    nasty = '"><script>alert(1)</script>&amp;'
    fields = form_fields(task("echo_types"), {"text": nasty, "names": "</textarea><b>x"}, {"count": "<i>no</i>"})
    html = render(fields, autoescape)
    assert "<script" not in html and "<b>" not in html and "<i>" not in html
    page = Page(html)
    assert page.control("text").value == nasty and page.control("names").value == "\n</textarea><b>x"
    assert page.smalls["param-count-error"] == "<i>no</i>"


# -- round trips ---------------------------------------------------------------------------------------
def parse_post(t: Task, data: list[tuple[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """The parameters the API reads from a form post (files aside), validated."""
    return t.signature.validate(form_params(t, [(k, v) for k, v in data if isinstance(v, str)]))


@pytest.mark.parametrize("name", ["echo_types", "all_the_types", "hello", "word_count", "edge"])
def test_the_default_form_posts_the_defaults(name: str, tmp_path: Path) -> None:
    t = task(name)
    page = Page(render(form_fields(t)))
    filled = EDGE_FILLED if name == "edge" else {}
    for key, value in filled.items():
        page.control(key).value = value
    assert parse_post(t, page.post(), tmp_path) == t.signature.validate(dict(filled))


def test_changed_values_round_trip_nested_lists_and_checkboxes(tmp_path: Path) -> None:
    page = Page(render(form_fields(EDGE)))
    page.control("needed").value = "yes"
    page.control("maybe").value = "7"
    page.control("tri").select("false")
    page.control("level").select("3")
    page.control("picks", "select").select("b")
    page.control("notes").value = "\nsecond\nthird"
    page.control("spaced").value = "\n one \n\n two"
    page.control("outer.inner.tags").value = "\n5\n 6 \n"
    page.control("outer.inner.on", "checkbox").checked = False
    page.control("outer.when").value = "2026-07-08"
    page.control("optional_model").value = '\n{"start": 3}'
    page.control("meta").value = "\n"
    params = parse_post(EDGE, page.post(), tmp_path)
    assert params["maybe"] == 7 and params["tri"] is False and params["level"] == 3 and params["picks"] == ["b"]
    assert params["notes"] == "second\nthird" and params["spaced"] == ["one", "two"]
    assert params["outer"] == {"inner": {"label": "in", "tags": [5, 6], "on": False}, "when": "2026-07-08"}
    assert params["optional_model"] == {"start": 3, "end": 10}
    assert params["meta"] == {"x": 1}  # an empty JSON field that may not be None: the default
    page.control("picks", "select").select()
    page.control("maybe").value = ""
    assert (
        parse_post(EDGE, page.post(), tmp_path)["picks"] == []
        and parse_post(EDGE, page.post(), tmp_path)["maybe"] is None
    )


@pytest.mark.parametrize(
    "annotation, texts, nested, expected",
    [
        (list[str], ["a\r\nb", "c"], None, ["a", "b", "c"]),
        (list[str], ['["x", " y"]'], None, ["x", " y"]),
        (list[str], ["[x]"], None, ["[x]"]),
        (list[str] | None, [""], None, None),
        (list[str], [""], None, []),
        (Window, ['{"start": 2}'], None, {"start": 2}),
        (Window, ['{"start": 2, "end": 3}'], {"end": ["9"]}, {"start": 2, "end": "9"}),
        (Window, [], {"start": ["1"], "end": ["2"]}, {"start": "1", "end": "2"}),
        (Window | None, [" "], None, None),
        (Window, [""], None, ...),
        (dict[str, list[int]], [], {"a": ["1\n2"]}, {"a": ["1", "2"]}),
        (bool, ["false", "true"], None, "true"),
        (bool, ["false"], None, "false"),
        (int | None, [""], None, None),
        (str, ["a\r\nb"], None, "a\nb"),
        (Literal[1, 2], ["2"], None, 2),
        (Literal["1", 2], ["1"], None, "1"),
    ],
)
def test_form_values_are_read_like_the_form_writes_them(
    annotation: Any, texts: list[str], nested: dict[str, list[str]] | None, expected: Any
) -> None:
    """One parameter `p` of each type, read from the strings posted as `p` and `p.<part>`; `...` means it
    is left out, for its default to apply."""

    def job(p: Any) -> None:
        """A task of one parameter."""

    job.__annotations__ = {"p": annotation, "return": None}
    posted = [("p", text) for text in texts] + [(f"p.{k}", v) for k, vs in (nested or {}).items() for v in vs]
    params = form_params(make_task(job), posted)
    assert params == ({} if expected is ... else {"p": expected})


def test_dotted_names_only_for_parts_of_objects(tmp_path: Path) -> None:
    t = task("echo_types")
    form = FormData([("window.start", "4"), ("count.x", "1"), ("names.0", "a"), ("zzz.y", "2")])
    params = form_params(t, form.multi_items())
    assert params["window"] == {"start": "4"}
    assert {"count.x", "names.0", "zzz.y"} <= set(params) and "count" not in params and "names" not in params


# -- through the API ---------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app.asgi()) as test_client:
        yield test_client


def encode(data: list[tuple[str, Any]], multipart: bool) -> tuple[bytes, str]:
    """A form body as a browser builds it."""
    if not multipart:
        assert all(isinstance(v, str) for _, v in data)
        return urllib.parse.urlencode(data).encode(), "application/x-www-form-urlencoded"
    boundary = f"----form{uuid.uuid4().hex}"
    body = b""
    for name, value in data:
        if isinstance(value, str):
            body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            body += value.encode() + b"\r\n"
        else:
            filename, content, content_type = value
            body += (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: {content_type}\r\n\r\n"
                ).encode()
                + content
                + b"\r\n"
            )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(client: TestClient, name: str, data: list[tuple[str, Any]], multipart: bool = True) -> Any:
    body, content_type = encode(data, multipart)
    return client.post(f"/api/tasks/{name}/jobs", content=body, headers={"content-type": content_type})


@pytest.mark.parametrize("multipart", [True, False])
def test_echo_types_form_round_trip_through_the_api(client: TestClient, multipart: bool) -> None:
    t = task("echo_types")
    response = post(client, "echo_types", Page(render(form_fields(t))).post(), multipart)
    assert response.status_code == 202, response.text
    assert response.json()["params"] == t.signature.validate({})

    page = Page(render(form_fields(t)))
    page.control("count").value = "3"
    page.control("flag", "checkbox").checked = True
    page.control("colour").select("blue")
    page.control("moment").value = "2026-02-03T04:05"
    page.control("names").value = "\nx\ny z\n"
    page.control("window.start").value = "2"
    response = post(client, "echo_types", page.post(), multipart)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["params"] == {
        **t.signature.validate({}),
        "count": 3,
        "flag": True,
        "colour": "blue",
        "moment": "2026-02-03T04:05:00",
        "names": ["x", "y z"],
        "window": {"start": 2, "end": 10},
    }
    done = client.get(f"/api/jobs/{job['id']}", params={"wait": 30}).json()
    assert done["status"] == "succeeded", done
    assert done["result"]["window"] == "Window" and done["result"]["moment"] == "datetime"

    ticked = Page(render(form_fields(t, {"flag": "true"})))
    assert ticked.control("flag", "checkbox").checked
    ticked.control("flag", "checkbox").checked = False  # the user unticks it: only the hidden "false" is sent
    response = post(client, "echo_types", ticked.post(), multipart)
    assert response.status_code == 202 and response.json()["params"]["flag"] is False


def test_rejected_form_errors_land_on_the_fields(client: TestClient) -> None:
    t = task("echo_types")
    page = Page(render(form_fields(t)))
    page.control("count").value = "many"
    page.control("window.start").value = "x"
    data = page.post()
    response = post(client, "echo_types", data)
    assert response.status_code == 422
    errors = {f["field"]: f["message"] for f in response.json()["error"]["fields"]}
    assert set(errors) == {"count", "window.start"}
    fields = form_fields(t, dict(data), errors)
    f = by_name(fields)
    assert f["count"].error and f["window.start"].error and f["count"].value == "many"
    assert unplaced_errors(fields, errors) == {}
    again = Page(render(fields))
    assert again.control("count").attrs["aria-invalid"] == "true" and again.control("window.start").value == "x"


def test_file_form_round_trip_through_the_api(client: TestClient) -> None:
    page = Page(render(form_fields(task("read_upload"))))
    page.control("document").file = ("notes.txt", b"hello", "text/plain")
    response = post(client, "read_upload", page.post())  # "extra" is sent empty, as browsers do
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert params["document"]["filename"] == "notes.txt" and params["document"]["size"] == 5
    assert params["extra"] == []
    missing = post(client, "read_upload", Page(render(form_fields(task("read_upload")))).post())
    assert missing.status_code == 422 and missing.json()["error"]["fields"][0]["field"] == "document"
