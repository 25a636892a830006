"""Chromium words a form's validation bubble ("Please fill out this field.") in the browser's own
language; mieruka's pages word it in theirs (static/mieruka.js, issue 22). A server of tests/jobs.py,
its `shaped` task's form submitted with each kind of wrong value in a browser asking for Japanese,
Russian and English: the field's validationMessage is the page's, and typing takes it off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ServerProcess, shared_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# What the page says for each wrong value: (field, value typed, message), by the browser's language.
EXPECTED = {
    "ja-JP": [
        ("code", "", "このフィールドに入力してください。"),
        ("code", "AB1", "4 文字以上で入力してください（現在 3 文字）。"),
        ("code", "abcd", "指定された形式で入力してください。"),
        ("fives", "55", "50 以下の値を入力してください。"),
        ("fives", "0", "5 以上の値を入力してください。"),
        ("fives", "12", "有効な値を入力してください。最も近い有効な値は 10 と 15 です。"),
    ],
    "ru-RU": [
        ("code", "", "Заполните это поле."),
        ("code", "AB1", "Введите не менее 4 символов (сейчас 3)."),
        ("fives", "12", "Введите допустимое значение; ближайшие допустимые: 10 и 15."),
    ],
    "en-US": [
        ("code", "", "Fill out this field."),
        ("code", "AB1", "Use at least 4 characters (now 3)."),
        ("fives", "55", "The value must be 50 or less."),
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    proc = ServerProcess("tests/jobs.py:app", tmp_path_factory.mktemp("form-messages") / "home", "--workers", "1")
    with shared_server(proc, request) as ready:
        yield ready


def message_after_submit(page: Page, field: str, value: str) -> str:
    """Fill `field` with `value` (the others right), press Submit, and read what the browser would say."""
    page.locator('[name="code"]').fill("AB12")
    page.locator('[name="fives"]').fill("10")
    page.locator(f'[name="{field}"]').fill(value)
    page.locator("form.task-form button[type=submit]").click()
    message: str = page.locator(f'[name="{field}"]').evaluate("el => el.validationMessage")
    return message


@pytest.mark.parametrize("locale", list(EXPECTED))
def test_the_browsers_validation_messages_are_in_the_pages_language(
    browser: Browser, server: ServerProcess, locale: str
) -> None:
    context = browser.new_context(locale=locale)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/tasks/shaped")
        assert page.evaluate("document.documentElement.lang") == locale.split("-")[0]
        for field, value, expected in EXPECTED[locale]:
            assert message_after_submit(page, field, value) == expected, (field, value)
            assert page.url.endswith("/tasks/shaped"), "the browser kept the form"
        # Typing takes the message off: the browser judges the new value, and the form goes.
        page.locator('[name="fives"]').fill("15")
        assert page.locator('[name="fives"]').evaluate("el => el.validationMessage") == ""
        page.locator("form.task-form button[type=submit]").click()
        page.wait_for_url("**/jobs/*")
    finally:
        context.close()
