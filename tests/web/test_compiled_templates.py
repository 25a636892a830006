"""Compiled templates are kept for the next server (issue 23): a template compiled once is not
compiled again by another app or process with the same settings, one with other settings compiles
its own, and a cache that cannot be read or written never fails a page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from fastapi.templating import Jinja2Templates

import mieruka
from mieruka.web.ui.templating import TEMPLATES, CompiledTemplates, page_templates

pytestmark = pytest.mark.in_process


@pytest.fixture
def app(tmp_path: Path) -> Iterator[mieruka.App]:
    app = mieruka.App("compiled", home=tmp_path / "home", executor="threads", workers=1)
    yield app


def templates(app: mieruka.App, folder: Path) -> tuple[Jinja2Templates, list[str]]:
    """The app's page templates with their compiled templates in `folder`, and the names of the
    templates it compiles from source."""
    pages = page_templates(app.runtime)
    env = pages.env
    env.bytecode_cache = CompiledTemplates(env, str(folder))
    compiled: list[str] = []
    compile_source = env.compile

    def counting(source: str, name: str | None = None, filename: str | None = None, *args: object) -> object:
        compiled.append(name or "")
        return compile_source(source, name, filename, *args)  # type: ignore[call-overload]

    env.compile = counting  # type: ignore[method-assign,assignment]
    return pages, compiled


def all_templates() -> list[str]:
    return sorted(str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html"))


def test_a_template_compiled_once_is_read_back_by_the_next_app(app: mieruka.App, tmp_path: Path) -> None:
    folder = tmp_path / "compiled"
    folder.mkdir(mode=0o700)
    first, compiled = templates(app, folder)
    for name in all_templates():
        first.get_template(name)
    assert sorted(compiled) == all_templates()
    assert len(list(folder.iterdir())) == len(all_templates())
    second, compiled_again = templates(app, folder)
    for name in all_templates():
        second.get_template(name)
    assert compiled_again == []
    # The same code from either.
    for name in ("base.html", "_job_panel.html"):
        code = first.get_template(name).root_render_func.__code__
        assert second.get_template(name).root_render_func.__code__.co_code == code.co_code


def test_other_settings_compile_their_own(app: mieruka.App, tmp_path: Path) -> None:
    folder = tmp_path / "compiled"
    folder.mkdir(mode=0o700)
    first, _ = templates(app, folder)
    first.get_template("base.html")
    other = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)
    other.add_extension("jinja2.ext.i18n")  # old-style gettext: other code for the same source
    assert CompiledTemplates(other, str(folder)).settings != first.env.bytecode_cache.settings  # type: ignore[union-attr]
    second, compiled = templates(app, folder)
    second.env.trim_blocks = True  # a setting that changes the code made
    second.env.bytecode_cache = CompiledTemplates(second.env, str(folder))
    second.get_template("base.html")
    assert "base.html" in compiled


def test_a_cache_that_cannot_be_read_or_written_fails_no_page(app: mieruka.App, tmp_path: Path) -> None:
    folder = tmp_path / "compiled"
    folder.mkdir(mode=0o700)
    first, _ = templates(app, folder)
    first.get_template("base.html")
    for path in folder.iterdir():
        path.write_bytes(path.read_bytes()[:40])  # cut short
    second, compiled = templates(app, folder)
    assert second.get_template("base.html") is not None and compiled == ["base.html"]
    gone = tmp_path / "gone"
    third, compiled = templates(app, gone)  # the folder removed by a cleaner of the temporary folder
    assert third.get_template("_job_panel.html") is not None and compiled == ["_job_panel.html"]
