"""The language of the current request, and the UI's messages in it (issue 22).

English is the source language: a message is marked where it is written, `_("Jobs")`,
`_("Job %(id)s failed", id=job.id)`, `ngettext("%(num)d job", "%(num)d jobs", n)`, and translated
at use into the language the middleware put in `LANGUAGE` for this request (English outside one).
Module-level constants are marked with `N_` and translated where they are shown, `_(CONSTANT)`.

The translations are gettext catalogs, `locale/<tag>/LC_MESSAGES/mieruka.po` (text, kept in git),
read with Babel the first time a language is asked for; a language is one catalog and one line in
`LANGUAGES`. English pages never load Babel.
"""

from __future__ import annotations

import functools
import gettext
import html
import io
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGLISH = "en"
DOMAIN = "mieruka"
LOCALE = Path(__file__).with_name("locale")


@dataclass(frozen=True)
class Language:
    """`tag`: BCP 47 (<html lang>, Accept-Language); `name`: its own name, in the switcher;
    `when`: how tables show a date and time (a CLDR pattern; empty: the locale's medium format)."""

    tag: str
    name: str
    when: str = ""

    @property
    def folder(self) -> str:
        """Its catalog's folder under locale/ and its Babel locale: zh-Hans is zh_Hans."""
        return self.tag.replace("-", "_")


# One line per language. English is the messages as written, and keeps its ISO-like times.
LANGUAGES: tuple[Language, ...] = (
    Language(ENGLISH, "English"),
    Language("ja", "日本語", "yyyy/MM/dd HH:mm:ss"),
    Language("zh-Hans", "简体中文", "yyyy-MM-dd HH:mm:ss"),
    Language("ru", "Русский", "dd.MM.yyyy HH:mm:ss"),
)
BY_TAG = {language.tag: language for language in LANGUAGES}
# Tags people and browsers write for the same languages.
_ALIASES = {"zh": "zh-Hans", "zh-cn": "zh-Hans", "zh-sg": "zh-Hans", "zh-hans-cn": "zh-Hans", "zh-my": "zh-Hans"}

LANGUAGE: ContextVar[str] = ContextVar("mieruka_language", default=ENGLISH)


def supported(value: str | None) -> str | None:
    """The tag of ours that `value` names ("ja-JP", "zh_CN", "RU"), None for another language."""
    text = (value or "").strip().replace("_", "-").lower()
    if not text:
        return None
    for language in LANGUAGES:
        if text == language.tag.lower():
            return language.tag
    if text in _ALIASES:
        return _ALIASES[text]
    if text.startswith(("zh-hant", "zh-tw", "zh-hk", "zh-mo")):
        return None  # traditional script: not ours
    base = text.split("-")[0]
    return _ALIASES.get(base) or (base if base in BY_TAG else None)


def of_locale(environ: Mapping[str, str]) -> str | None:
    """The language of ours a process's locale names, read as GNU gettext reads it: the first of
    LC_ALL, LC_MESSAGES and LANG that is set (ja_JP.UTF-8: "ja"), unless it is C or POSIX, then
    LANGUAGE's list (ja:en) before it; None for another language or none."""
    locale = next((environ[name] for name in ("LC_ALL", "LC_MESSAGES", "LANG") if environ.get(name)), "")
    base = locale.split(".")[0].split("@")[0]
    if base in ("", "C", "POSIX"):
        return None
    for entry in [*environ.get("LANGUAGE", "").split(":"), base]:
        tag = supported(entry.split(".")[0].split("@")[0])
        if tag is not None:
            return tag
    return None


def negotiate(accept_language: str) -> str | None:
    """The best language of ours for an Accept-Language header (q-values honoured), or None."""
    best: tuple[float, int] | None = None
    found = None
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _eq, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ours = supported(tag) if quality > 0 else None
        if ours is not None and (best is None or (quality, -position) > best):
            best, found = (quality, -position), ours
    return found


@dataclass
class _Catalog:
    translations: gettext.NullTranslations
    # msgid (a plural's singular) -> its translation or forms, and where it is used
    messages: dict[str, str | tuple[str, ...]]
    places: dict[str, frozenset[str]]


@functools.cache
def _catalog(tag: str) -> _Catalog:
    path = LOCALE / BY_TAG[tag].folder / "LC_MESSAGES" / f"{DOMAIN}.po" if tag in BY_TAG else None
    if tag == ENGLISH or path is None or not path.is_file():
        return _Catalog(gettext.NullTranslations(), {}, {})
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as po:
        catalog = read_po(po, locale=BY_TAG[tag].folder, domain=DOMAIN)
    messages: dict[str, str | tuple[str, ...]] = {}
    places: dict[str, frozenset[str]] = {}
    for message in list(catalog):
        if not message.id:
            continue  # the header
        forms = (
            tuple(str(form or "") for form in message.string)
            if isinstance(message.string, (tuple, list))
            else (str(message.string or ""),)
        )
        if message.fuzzy or not all(forms):
            catalog.delete(message.id, message.context)  # untranslated: the English shows
            continue
        key = str(message.id[0] if isinstance(message.id, (tuple, list)) else message.id)
        messages[key] = forms if isinstance(message.id, (tuple, list)) else forms[0]
        places[key] = frozenset(Path(file).name for file, _line in message.locations)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return _Catalog(gettext.GNUTranslations(compiled), messages, places)


def translations(tag: str) -> gettext.NullTranslations:
    """The catalog of language `tag` (English, or a language without one: the messages as written)."""
    return _catalog(tag).translations


def current_language() -> str:
    """The language of the current request (BCP 47 tag), "en" outside one."""
    return LANGUAGE.get()


def gettext_(message: str) -> str:
    """`message` in the current language, unformatted (what Jinja's newstyle gettext wraps)."""
    return translations(LANGUAGE.get()).gettext(message)


def ngettext_(singular: str, plural: str, n: int) -> str:
    """The form of `singular`/`plural` for `n` in the current language, unformatted."""
    return translations(LANGUAGE.get()).ngettext(singular, plural, n)


def _(message: str, **values: Any) -> str:
    """`message` in the current request's language, with its %(name)s placeholders filled."""
    text = gettext_(message)
    return text % values if values else text


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; `_` translates it where it is shown."""
    return message


def ngettext(singular: str, plural: str, n: int, **values: Any) -> str:
    """The form for `n` in the current language, formatted with `values` and `num` (n, as in Jinja)."""
    return ngettext_(singular, plural, n) % {"num": n, **values}


def localized(text: str | Mapping[str, str] | None, tag: str | None = None) -> str:
    """An author's string given per language (`{"en": "Sales", "ja": "売上"}`) in language `tag`
    (default: the current one): that language, else its base language, else English, else the
    first given. A plain string is the same in every language."""
    if isinstance(text, Localized):
        text = text.translations
    elif text is None or isinstance(text, str):
        return text or ""
    if not text:
        return ""
    tag = tag or LANGUAGE.get()
    for key in (tag, tag.split("-")[0], ENGLISH):
        if key in text:
            return text[key]
    for key, value in text.items():
        if supported(key) == tag:
            return value
    return next(iter(text.values()))


def js_messages(*scripts: str | None) -> dict[str, str | dict[str, str]]:
    """The translations a page embeds for its scripts of ours (`static/<name>`), for
    window.mieruka_i18n (static/i18n.js): msgid to text, or a plural's singular msgid to its forms
    by CLDR plural category ("one", "few", "many", "other"), which Intl.PluralRules picks."""
    tag = LANGUAGE.get()
    if tag == ENGLISH:
        return {}
    return _js_messages(tag, frozenset(s for s in scripts if s))


@functools.cache
def _js_messages(tag: str, scripts: frozenset[str]) -> dict[str, str | dict[str, str]]:
    catalog = _catalog(tag)
    out: dict[str, str | dict[str, str]] = {}
    categories: dict[str, int] | None = None
    for key, text in catalog.messages.items():
        if not catalog.places.get(key, frozenset()) & scripts:
            continue
        if isinstance(text, str):
            out[key] = text
            continue
        if categories is None:
            categories = _plural_categories(tag, catalog.translations)
        out[key] = {category: text[index] for category, index in categories.items() if index < len(text)}
    return out


def _plural_categories(tag: str, translations: gettext.NullTranslations) -> dict[str, int]:
    """Which of the catalog's plural forms each CLDR category (what Intl.PluralRules says) is."""
    from babel import Locale

    locale = Locale.parse(BY_TAG[tag].folder)
    plural = getattr(translations, "plural", lambda n: int(n != 1))
    found: dict[str, int] = {}
    for n in range(0, 200):
        found.setdefault(locale.plural_form(n), int(plural(n)))
    return found


# An author's string (a task's title, a dashboard's): one text for every language, or one per
# language, {"en": "Sales", "ja": "売上"}.
Text = str | Mapping[str, str]


class Localized(str):
    """An author's string given per language. As a str it is the English text (else the first
    given): the API, OpenAPI and logs show that. Pages show it in the reader's language: Jinja's
    autoescape writes what `__html__` gives; `in_language` says it in any."""

    translations: dict[str, str]

    def __new__(cls, texts: Mapping[str, str]) -> Localized:
        self = super().__new__(cls, localized(texts, ENGLISH))
        self.translations = dict(texts)
        return self

    def __getnewargs__(self) -> tuple[dict[str, str]]:  # type: ignore[override]  # pickle, copy
        return (self.translations,)

    def in_language(self, tag: str | None = None) -> str:
        return localized(self.translations, tag)

    def __html__(self) -> str:
        return html.escape(self.in_language(), quote=True)


def text(value: Text | None, what: str = "text") -> str:
    """An author's string as given to mieruka: a str, or a Localized for one given per language
    (ConfigError when that is empty or not all texts)."""
    if value is None or isinstance(value, str):
        return value or ""
    if (
        not isinstance(value, Mapping)
        or not value
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        from .errors import ConfigError

        raise ConfigError(f'{what}: a text, or texts by language such as {{"en": "Sales", "ja": "売上"}}')
    return Localized(value)
