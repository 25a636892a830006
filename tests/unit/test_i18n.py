"""mieruka.i18n (issue 22): which language a tag or an Accept-Language header names, the catalogs
read with Babel (untranslated and fuzzy messages stay English), plurals in Python and for the
pages' scripts, the author's strings given per language, and dates, numbers, sizes and durations
written the language's way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mieruka import i18n
from mieruka.i18n import LANGUAGE, _, localized, negotiate, ngettext, supported
from mieruka.web.ui import formats

PO = """
msgid ""
msgstr ""
"Language: {lang}\\n"
"Plural-Forms: {plural}\\n"
"Content-Type: text/plain; charset=utf-8\\n"

#: src/mieruka/web/templates/base.html
msgid "Jobs"
msgstr "{jobs}"

#: src/mieruka/web/ui/pages.py
msgid "Job %(id)s failed"
msgstr "{failed}"

#: src/mieruka/web/static/mieruka.js src/mieruka/web/ui/pages.py
msgid "%(num)d job"
msgid_plural "%(num)d jobs"
{forms}

#: src/mieruka/web/static/dashboards.js
msgid "Reconnecting…"
msgstr "{reconnecting}"

#, fuzzy
msgid "Workers"
msgstr "guessed"

msgid "Pools"
msgstr ""
"""

RU = {
    "lang": "ru",
    "plural": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);",
    "jobs": "Задания",
    "failed": "Задание %(id)s завершилось с ошибкой",
    "forms": 'msgstr[0] "%(num)d задание"\nmsgstr[1] "%(num)d задания"\nmsgstr[2] "%(num)d заданий"',
    "reconnecting": "Переподключение…",
}
JA = {
    "lang": "ja",
    "plural": "nplurals=1; plural=0;",
    "jobs": "ジョブ",
    "failed": "ジョブ %(id)s が失敗しました",
    "forms": 'msgstr[0] "%(num)d 件のジョブ"',
    "reconnecting": "再接続中…",
}


@pytest.fixture
def catalogs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for language, values in (("ru", RU), ("ja", JA)):
        folder = tmp_path / language / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "mieruka.po").write_text(PO.format(**values), encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE", tmp_path)
    i18n._catalog.cache_clear()
    i18n._js_messages.cache_clear()
    yield tmp_path
    i18n._catalog.cache_clear()
    i18n._js_messages.cache_clear()


@pytest.fixture(autouse=True)
def english_again() -> Iterator[None]:
    """Tests run one after another in one context: the language a test sets must not outlive it."""
    token = LANGUAGE.set("en")
    yield
    LANGUAGE.reset(token)


def speaking(tag: str) -> None:
    LANGUAGE.set(tag)


def test_tags_people_and_browsers_write_name_our_languages() -> None:
    assert [supported(tag) for tag in ("ja", "ja-JP", "JA_jp", "ru-RU", "en-GB", "en")] == [
        "ja",
        "ja",
        "ja",
        "ru",
        "en",
        "en",
    ]
    assert [supported(tag) for tag in ("zh", "zh-CN", "zh_Hans", "zh-Hans-CN", "zh-SG")] == ["zh-Hans"] * 5
    assert [supported(tag) for tag in ("zh-TW", "zh-Hant", "de", "", None, "*")] == [None] * 6


def test_a_locale_names_the_language_of_the_command_line() -> None:
    """As GNU gettext reads it: LC_ALL, LC_MESSAGES, LANG; LANGUAGE's list unless the locale is C."""
    assert i18n.of_locale({"LANG": "ja_JP.UTF-8"}) == "ja"
    assert i18n.of_locale({"LANG": "ru_RU.UTF-8@euro", "LC_MESSAGES": "zh_CN.UTF-8"}) == "zh-Hans"
    assert i18n.of_locale({"LANG": "ja_JP.UTF-8", "LC_ALL": "C"}) is None
    assert i18n.of_locale({"LANG": "en_GB.UTF-8", "LANGUAGE": "de:ru:en"}) == "ru"
    assert i18n.of_locale({"LANG": "en_GB.UTF-8", "LANGUAGE": "de"}) == "en"
    for other in (
        {},
        {"LANG": "C.UTF-8", "LANGUAGE": "ja"},
        {"LANG": "POSIX"},
        {"LANG": "zh_TW.UTF-8"},
        {"LANG": "de_DE"},
    ):
        assert i18n.of_locale(other) is None, other


def test_accept_language_takes_the_best_quality_then_the_first_named() -> None:
    assert negotiate("ja,en;q=0.8") == "ja"
    assert negotiate("de-DE,de;q=0.9,ru;q=0.5,en;q=0.3") == "ru"
    assert negotiate("en;q=0.5, zh-CN;q=0.9") == "zh-Hans"
    assert negotiate("zh-TW,zh;q=0.9") == "zh-Hans"
    assert negotiate("ru, ja") == "ru"
    assert negotiate("fr, de") is None
    assert negotiate("ja;q=0, en;q=0.1") == "en"
    assert negotiate("ja;q=oops") is None
    assert negotiate("") is None


def test_messages_are_translated_in_the_current_language(catalogs: Path) -> None:
    assert _("Jobs") == "Jobs"  # English outside a request
    speaking("ru")
    assert _("Jobs") == "Задания"
    assert _("Job %(id)s failed", id=7) == "Задание 7 завершилось с ошибкой"
    assert [ngettext("%(num)d job", "%(num)d jobs", n) for n in (1, 3, 5, 21)] == [
        "1 задание",
        "3 задания",
        "5 заданий",
        "21 задание",
    ]
    speaking("ja")
    assert _("Jobs") == "ジョブ"
    assert ngettext("%(num)d job", "%(num)d jobs", 4) == "4 件のジョブ"


def test_untranslated_and_fuzzy_messages_stay_english(catalogs: Path) -> None:
    speaking("ru")
    assert _("Workers") == "Workers"
    assert _("Pools") == "Pools"
    assert _("never marked") == "never marked"
    speaking("zh-Hans")  # no catalog in this folder: all English
    assert _("Jobs") == "Jobs"


def test_a_page_embeds_only_its_scripts_messages_with_plurals_by_cldr_category(catalogs: Path) -> None:
    assert i18n.js_messages("mieruka.js") == {}  # English: nothing to embed
    speaking("ru")
    assert i18n.js_messages("mieruka.js", None) == {
        "%(num)d job": {"one": "%(num)d задание", "few": "%(num)d задания", "many": "%(num)d заданий"}
    }
    assert i18n.js_messages("dashboards.js") == {"Reconnecting…": "Переподключение…"}
    speaking("ja")
    assert i18n.js_messages("mieruka.js", "dashboards.js") == {
        "%(num)d job": {"other": "%(num)d 件のジョブ"},
        "Reconnecting…": "再接続中…",
    }


def test_authors_strings_fall_back_to_the_base_language_then_english_then_the_first() -> None:
    title = {"en": "Sales", "ja": "売上", "zh": "销售"}
    assert localized(title, "ja") == "売上"
    assert localized(title, "zh-Hans") == "销售"
    assert localized(title, "ru") == "Sales"
    assert localized({"ja": "売上", "ru": "Продажи"}, "en") == "売上"
    assert localized({"zh-CN": "销售"}, "zh-Hans") == "销售"
    assert localized("Sales", "ja") == "Sales"
    assert localized(None, "ja") == ""
    speaking("ja")
    assert localized(title) == "売上"


WHEN = datetime(2026, 12, 4, 11, 28, 5, tzinfo=UTC)
TOKYO = ZoneInfo("Asia/Tokyo")


def test_times_in_the_zone_and_the_languages_form() -> None:
    assert formats.local_time(WHEN, TOKYO, "en") == "2026-12-04 20:28:05"
    assert formats.local_time(WHEN, TOKYO, "ja") == "2026/12/04 20:28:05"
    assert formats.local_time(WHEN, TOKYO, "zh-Hans") == "2026-12-04 20:28:05"
    assert formats.local_time(WHEN, TOKYO, "ru") == "04.12.2026 20:28:05"
    assert formats.local_time(None, TOKYO, "ja") == ""
    speaking("ja")
    assert formats.local_time(WHEN, ZoneInfo("UTC")) == "2026/12/04 11:28:05"


def plain(text: str) -> str:
    """CLDR's spaces (no-break, narrow no-break: they vary with Babel's data) as plain spaces."""
    return text.replace("\xa0", " ").replace("\u202f", " ")


def test_numbers_sizes_and_durations_in_the_languages_form() -> None:
    assert [plain(formats.number(1234567.5, lang)) for lang in ("en", "ja", "ru")] == [
        "1,234,567.5",
        "1,234,567.5",
        "1 234 567,5",
    ]
    assert formats.size(1536 * 1024, "en") == "1.5 MB"
    assert plain(formats.size(1536 * 1024, "ru")) == "1,5 МБ"
    assert formats.size(1536 * 1024, "ja") == "1.5 MB"
    assert formats.duration(125, "en") == "2 min 5 s"
    assert plain(formats.duration(125, "ja")) == "2 分 5 秒"
    assert plain(formats.duration(125, "zh-Hans")) == "2分钟 5秒"
    assert plain(formats.duration(125, "ru")) == "2 мин 5 с"
    assert plain(formats.duration(0.25, "ru")) == "250 мс"
    assert plain(formats.duration(7300, "ja")) == "2 時間 1 分"
    assert formats.duration(None, "ja") == ""
