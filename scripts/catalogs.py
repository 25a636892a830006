#!/usr/bin/env python3
"""The UI's message catalogs (issue 22): `python3 scripts/dev.py i18n`.

Extracts every marked message with Babel: templates (`_()`, `ngettext()`, `{% trans %}`), Python
(`_`, `N_`, `ngettext`) and our scripts (`t`, `tn`), writes the template
src/mieruka/locale/mieruka.pot, and brings each language's catalog
src/mieruka/locale/<tag>/LC_MESSAGES/mieruka.po up to date with it (new messages empty, gone ones
dropped), creating the catalog of a language just added to mieruka.i18n.LANGUAGES.
The locations name the files only (no line numbers): moving code changes no catalog, and the pages
embed for their scripts the messages found in them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "mieruka"
LOCALE = PACKAGE / "locale"
TEMPLATE = LOCALE / "mieruka.pot"

# (how files are read, the functions that mark a message): templates and Python, then our scripts,
# whose t() and tn() are no markers in Python (`t` names the tables module there).
PASSES = [
    (
        [
            ("web/static/**", "ignore"),
            ("web/templates/**.html", "jinja2.ext:babel_extract"),
            ("**.py", "python"),
        ],
        {"_": None, "N_": None, "ngettext": (1, 2)},
    ),
    (
        [("web/static/vendor/**", "ignore"), ("web/static/**.js", "javascript")],
        {"t": None, "tn": (1, 2)},
    ),
]
OPTIONS = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}


def _found() -> Iterator[tuple[str, int, str | tuple[str, ...], list[str], str | None]]:
    for methods, keywords in PASSES:
        for file, line, message, comments, context in extract_from_dir(
            PACKAGE, methods, OPTIONS, keywords, strip_comment_tags=True
        ):
            yield f"src/mieruka/{file}", line, message, comments, context


HEADER = "# {what}: `python3 scripts/dev.py i18n` brings this file up to date (docs/i18n.md)."


def extract() -> Catalog:
    """The template: every message marked in the package, with the files that use it."""
    template = Catalog(
        project="mieruka",
        header_comment=HEADER.format(what="The messages of mieruka's pages"),
        msgid_bugs_address="",
        copyright_holder="mieruka's authors",
        last_translator="mieruka's authors",
        language_team="mieruka's authors",
        fuzzy=False,
    )
    for file, line, message, comments, context in _found():
        if isinstance(message, tuple) and not message[0]:
            continue
        if not message:
            continue
        template.add(message, None, [(file, line)], auto_comments=comments, context=context)
    return template


def _write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog, width=100, sort_output=True, ignore_obsolete=True, include_lineno=False)


def update() -> list[Path]:
    """Write the template and every language's catalog; returns the files written."""
    sys.path.insert(0, str(ROOT / "src"))
    from mieruka.i18n import ENGLISH, LANGUAGES

    template = extract()
    if TEMPLATE.is_file():  # the dates change with the messages only: no diff without a change
        with TEMPLATE.open("rb") as pot:
            before = read_po(pot)
        if {m.id: m.locations for m in before} == {m.id: m.locations for m in template}:
            template.creation_date = before.creation_date
    _write(template, TEMPLATE)
    written = [TEMPLATE]
    for language in LANGUAGES:
        if language.tag == ENGLISH:
            continue
        path = LOCALE / language.folder / "LC_MESSAGES" / "mieruka.po"
        if path.is_file():
            with path.open("rb") as po:
                catalog = read_po(po, locale=language.folder)
        else:
            catalog = Catalog(locale=language.folder, project="mieruka", fuzzy=False)
        catalog.header_comment = HEADER.format(what=f"{language.name}: the messages of mieruka's pages")
        catalog.last_translator = catalog.language_team = template.last_translator
        catalog.copyright_holder = template.copyright_holder
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
        catalog.revision_date = catalog.creation_date = template.creation_date
        _write(catalog, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in update():
        print(path.relative_to(ROOT))
