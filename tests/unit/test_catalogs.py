"""The UI's translations (issue 22) are complete and current: the template mieruka.pot holds every
message marked in the code (so a new string of the UI fails here until `python3 scripts/dev.py i18n`
is run and it is translated), and each language's catalog translates every one of them, none fuzzy,
with each placeholder of the English kept and no other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po
from scripts.catalogs import TEMPLATE, extract

from mieruka.i18n import ENGLISH, LANGUAGES, LOCALE

PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]")
OTHERS = [language for language in LANGUAGES if language.tag != ENGLISH]


def read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=locale)


def where(catalog: Catalog) -> dict[str | tuple[str, ...], set[str]]:
    """Each message (a plural: both its ids) with the files that use it."""
    return {
        tuple(m.id) if isinstance(m.id, (tuple, list)) else m.id: {file for file, _line in m.locations}
        for m in catalog
        if m.id
    }


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def test_the_template_holds_every_message_marked_in_the_code() -> None:
    fresh, kept = where(extract()), where(read(TEMPLATE))
    new = sorted(str(m) for m in fresh.keys() - kept.keys())
    gone = sorted(str(m) for m in kept.keys() - fresh.keys())
    assert not new and not gone, f"run `python3 scripts/dev.py i18n` and translate: new {new}, gone {gone}"
    moved = sorted(str(m) for m in fresh if fresh[m] != kept[m])
    assert not moved, f"used in other files now (run `python3 scripts/dev.py i18n`): {moved}"


@pytest.mark.parametrize("language", OTHERS, ids=[language.tag for language in OTHERS])
def test_every_message_is_translated_with_its_placeholders(language: object) -> None:
    from mieruka.i18n import Language

    assert isinstance(language, Language)
    path = LOCALE / language.folder / "LC_MESSAGES" / "mieruka.po"
    assert path.is_file(), f"no catalog for {language.tag}: run `python3 scripts/dev.py i18n`"
    catalog = read(path, language.folder)
    assert where(catalog).keys() == where(read(TEMPLATE)).keys(), "run `python3 scripts/dev.py i18n`"
    problems = [problem for message in catalog if message.id for problem in _problems(message, catalog.num_plurals)]
    assert not problems, "\n".join(problems)


def _problems(message: Message, forms_wanted: int) -> list[str]:
    name = repr(message.id)
    if message.fuzzy:
        return [f"{name} is fuzzy"]
    if isinstance(message.id, (tuple, list)):
        forms = [str(form or "") for form in message.string or ()]
        if len(forms) != forms_wanted or not all(forms):
            return [f"{name}: wants {forms_wanted} plural forms, has {forms}"]
        wanted = placeholders(message.id[1])  # every form may stand for many
        return [
            f"{name}: {form!r} has {placeholders(form)}, not {wanted}" for form in forms if placeholders(form) != wanted
        ]
    text, english = str(message.string or ""), str(message.id)
    if not text:
        return [f"{name} is not translated"]
    if placeholders(text) != placeholders(english):
        return [f"{name}: {text!r} has {placeholders(text)}, not {placeholders(english)}"]
    return []


def test_the_catalogs_load_and_translate() -> None:
    from mieruka import i18n

    i18n._catalog.cache_clear()
    for language in OTHERS:
        translated = i18n.translations(language.tag)
        assert translated.gettext("Jobs") != "Jobs", language.tag
        five = translated.ngettext("%(num)d chart", "%(num)d charts", 5)
        assert "%(num)d" in five and five != "%(num)d charts", language.tag
