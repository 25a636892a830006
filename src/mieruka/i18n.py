"""The language of the current request, and the UI's messages in it (issue 22).

English is the source language: a message is marked where it is written, `_("Jobs")`,
`_("Job %(id)s failed", id=job.id)`, `ngettext("%(num)d job", "%(num)d jobs", n)`, and translated
at use into the language the middleware put in `LANGUAGE` for this request (English outside one).
Module-level constants are marked with `N_` and translated where they are shown, `_(CONSTANT)`.
"""

from __future__ import annotations

import gettext
from contextvars import ContextVar
from typing import Any

ENGLISH = "en"

LANGUAGE: ContextVar[str] = ContextVar("mieruka_language", default=ENGLISH)

_IDENTITY = gettext.NullTranslations()


def translations(language: str) -> gettext.NullTranslations:
    """The catalog of `language` (English: the messages as written)."""
    return _IDENTITY


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


def js_messages(*scripts: str | None) -> dict[str, str | dict[str, str]]:
    """The translations a page embeds for its scripts of ours (`static/<name>`), for
    window.mieruka_i18n (static/i18n.js): msgid to text, or a plural's singular msgid to its forms
    by CLDR plural category ("one", "few", "many", "other"), which Intl.PluralRules picks."""
    return {}
