"""The language of each page (issue 22, web/languages.py): the signed-in user's own setting, then
the switcher's cookie, then Accept-Language, then the setting `language`; `<html lang>` says it.
The header's switcher saves a signed-in user's choice (their session's CSRF token) and an anonymous
browser's in a cookie (the login form's token), refuses a post without the token, and the users API
shows and changes a user's language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

import mieruka
from mieruka.errors import ConfigError
from mieruka.web.csrf import CSRF_FIELD
from mieruka.web.languages import COOKIE
from tests.web.test_auth import PASSWORD, login, login_form_token


@pytest.fixture(autouse=True)
def _fast(cheap_hashes: None) -> None:
    pass


@pytest.fixture
def app(tmp_path: Path) -> Iterator[mieruka.App]:
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path / "home"), executor="threads", workers=1, prune_interval=3600, language="ru")
    yield app
    app._settings = None


@pytest.fixture
def client(app: mieruka.App) -> Iterator[TestClient]:
    with TestClient(app.asgi()) as client:
        for name, role in (("alice", "admin"), ("vic", "viewer")):
            app.auth.accounts.add_user(name, role, PASSWORD)
        yield client


def lang(client: TestClient, path: str = "/login", **headers: str) -> str:
    page = client.get(path, headers={"Accept": "text/html", **headers})
    assert page.status_code == 200, page.text
    found = re.search(r'<html lang="([^"]+)"', page.text)
    assert found, page.text[:300]
    return found.group(1)


def test_the_browser_chooses_then_the_server_setting(client: TestClient) -> None:
    assert lang(client, **{"Accept-Language": "ja,en;q=0.5"}) == "ja"
    assert lang(client, **{"Accept-Language": "zh-CN,zh;q=0.9"}) == "zh-Hans"
    assert lang(client, **{"Accept-Language": "en-US"}) == "en"
    assert lang(client, **{"Accept-Language": "fr-FR, de;q=0.5"}) == "ru"  # none of ours: the setting
    assert lang(client) == "ru"


def test_the_setting_must_name_one_of_our_languages(tmp_path: Path) -> None:
    from mieruka.errors import ConfigError
    from mieruka.settings import Settings

    assert Settings.load(overrides={"language": "ja-JP", "home": str(tmp_path)}).language == "ja"
    with pytest.raises(ConfigError, match="language"):
        Settings.load(overrides={"language": "tlh", "home": str(tmp_path)})


def test_an_anonymous_browser_switches_with_the_login_forms_token(client: TestClient) -> None:
    token = login_form_token(client)
    switched = client.post(
        "/language", data={CSRF_FIELD: token, "language": "ja", "next": "/login?next=/jobs"}, follow_redirects=False
    )
    assert switched.status_code == 303, switched.text
    assert switched.headers["location"] == "/login?next=/jobs"
    assert client.cookies.get(COOKIE) == "ja"
    assert lang(client, **{"Accept-Language": "ru"}) == "ja"  # the choice wins over the browser's
    # Back to the browser's language, and never away from this server.
    switched = client.post(
        "/language", data={CSRF_FIELD: token, "language": "", "next": "//evil.example/"}, follow_redirects=False
    )
    assert switched.headers["location"] == "/"
    assert lang(client, **{"Accept-Language": "zh"}) == "zh-Hans"


def test_the_switcher_refuses_a_post_without_the_token(client: TestClient) -> None:
    client.get("/login")
    refused = client.post("/language", data={"language": "ja"}, follow_redirects=False)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert COOKIE not in client.cookies
    login(client, "vic")
    refused = client.post("/language", data={"language": "ja", CSRF_FIELD: "wrong"}, follow_redirects=False)
    assert refused.status_code == 403


def test_an_unknown_language_is_a_clear_422(client: TestClient) -> None:
    token = login_form_token(client)
    refused = client.post("/language", data={CSRF_FIELD: token, "language": "tlh"}, follow_redirects=False)
    assert refused.status_code == 422
    assert "zh-Hans" in refused.json()["error"]["message"]


def test_a_signed_in_users_own_language_wins_everywhere(app: mieruka.App, client: TestClient) -> None:
    csrf = login(client, "vic")
    assert lang(client, "/jobs", **{"Accept-Language": "ja"}) == "ja"
    switched = client.post("/language", data={CSRF_FIELD: csrf, "language": "zh-Hans", "next": "/jobs"})
    assert switched.status_code == 200 and '<html lang="zh-Hans"' in switched.text
    client.cookies.delete(COOKIE)  # another browser of the same user: the account remembers
    assert lang(client, "/jobs", **{"Accept-Language": "ja"}) == "zh-Hans"
    assert client.get("/api/me").json()["language"] == "zh-Hans"
    assert app.auth.languages.of(app.auth.accounts.get_user("vic").id) == "zh-Hans"


def test_the_users_api_shows_and_changes_a_users_language(app: mieruka.App, client: TestClient) -> None:
    csrf = login(client, "alice")
    headers = {"X-CSRF-Token": csrf}
    users = {u["name"]: u for u in client.get("/api/users").json()}
    assert users["vic"]["language"] is None
    changed = client.patch("/api/users/vic", json={"language": "ja-JP"}, headers=headers)
    assert changed.status_code == 200 and changed.json()["language"] == "ja"
    assert {u["name"]: u["language"] for u in client.get("/api/users").json()}["vic"] == "ja"
    refused = client.patch("/api/users/vic", json={"language": "klingon"}, headers=headers)
    assert refused.status_code == 422
    cleared = client.patch("/api/users/vic", json={"language": ""}, headers=headers)
    assert cleared.json()["language"] is None


def test_every_page_has_the_switcher_with_the_current_language_chosen(client: TestClient) -> None:
    login(client, "alice")
    page = client.get("/jobs", headers={"Accept-Language": "ru"}).text
    form = re.search(r'<form method="post" action="/language".*?</form>', page, re.S)
    assert form, page
    assert f'name="{CSRF_FIELD}"' in form.group(0)
    assert '<option value="ru" lang="ru" selected>Русский</option>' in form.group(0)
    assert 'value="/jobs"' in form.group(0)


def test_the_authors_strings_show_in_the_readers_language_and_english_in_the_api(tmp_path: Path) -> None:
    from mieruka import charts

    app = mieruka.App("i18n", home=str(tmp_path / "home"), executor="threads", workers=1)

    @app.task(
        title={"en": "Double it", "ja": "倍にする"},
        description={"en": "Doubles x.", "ru": "Удваивает x."},
        help={"x": {"en": "A number", "ja": "数"}},
    )
    def double(x: int) -> int:
        return 2 * x

    @app.source(every="1h", title={"en": "Sales by day", "ja": "日別の売上"}, description={"ru": "Продажи"})
    def sales() -> list[dict[str, int]]:
        return [{"day": 1, "total": 2}]

    chart = charts.line(sales, x="day", y="total", title={"en": "Sales", "ja": "売上"})
    app.dashboard("board", [chart], title={"ja": "ボード", "ru": "Панель"}, description="Same in all")
    with TestClient(app.asgi()) as client:

        def page(path: str, language: str) -> str:
            answer = client.get(path, headers={"Accept-Language": language, "Accept": "text/html"})
            assert answer.status_code == 200, answer.text
            return str(answer.text)

        task = page("/tasks/double", "ja")
        assert "倍にする" in task and "数" in task and "Doubles x." in task  # no Japanese given: English
        assert "Удваивает x." in page("/tasks/double", "ru")
        board = page("/dashboards/board", "ja")
        assert "売上" in board and "ボード" in board and "Same in all" in board
        assert "Панель" in page("/dashboards/board", "ru") and "Sales" in page("/dashboards/board", "ru")
        assert "ボード" in page("/dashboards", "en")  # no English given: the first
        sources = page("/dashboards", "ja")  # the sources' table
        assert "日別の売上" in sources and "Продажи" in sources and "{&#39;" not in sources
        assert "Sales by day" in page("/dashboards", "ru")
        described = client.get("/api/tasks/double").json()
        assert described["title"] == "Double it" and described["description"] == "Doubles x."
        assert described["params_schema"]["properties"]["x"]["description"] == "A number"


def test_a_parameters_label_is_in_the_readers_language_on_the_form_and_english_in_the_schema(tmp_path: Path) -> None:
    app = mieruka.App("i18n", home=str(tmp_path / "home"), executor="threads", workers=1)

    @app.task(labels={"ward": {"en": "Ward code", "ja": "病棟コード"}, "day": "Day of stay"})
    def admissions(ward: str = "A1", day: int = 1, nights: int = 0) -> int:
        return 42

    with TestClient(app.asgi()) as client:

        def label_of(field: str, language: str) -> str:
            page = client.get("/tasks/admissions", headers={"Accept-Language": language, "Accept": "text/html"})
            assert page.status_code == 200, page.text
            found = re.search(rf'<label for="[^"]*{field}[^"]*">(.*?)</label>', page.text, re.S)
            assert found, page.text
            return found.group(1).strip()

        assert label_of("ward", "ja") == "病棟コード"
        assert label_of("ward", "ru") == "Ward code"  # no Russian given: English
        assert label_of("day", "ja") == "Day of stay"  # one text for every language
        assert label_of("nights", "ja") == "Nights"  # none given: made from the name
        properties = client.get("/api/tasks/admissions").json()["params_schema"]["properties"]
        assert properties["ward"]["title"] == "Ward code" and properties["day"]["title"] == "Day of stay"


class Window(BaseModel):
    start: int = 0
    end: int = 10


def test_a_field_of_a_parameters_model_is_labelled_and_helped_by_its_dotted_name(tmp_path: Path) -> None:
    app = mieruka.App("i18n", home=str(tmp_path / "home"), executor="threads", workers=1)

    @app.task(
        labels={"window.start": {"en": "From", "ja": "開始"}},
        help={"window.end": {"en": "The last hour", "ja": "最後の時刻"}},
    )
    def hours(window: Window = Window()) -> int:
        return 0

    with TestClient(app.asgi()) as client:
        page = client.get("/tasks/hours", headers={"Accept-Language": "ja", "Accept": "text/html"}).text
        assert re.search(r'<label for="[^"]*window-start[^"]*">\s*開始\s*</label>', page), page
        assert "最後の時刻" in page and "The last hour" not in page
        assert re.search(r'<label for="[^"]*window-end[^"]*">\s*End\s*</label>', page), page  # made from its name
        english = client.get("/tasks/hours", headers={"Accept-Language": "en", "Accept": "text/html"}).text
        assert "From" in english and "The last hour" in english
    with pytest.raises(
        ConfigError,
        match=r"label for 'window\.stat', which no parameter's model has \(its fields: window\.end, window\.start\)",
    ):
        app.task(name="typo", labels={"window.stat": "From"})(hours)


@pytest.mark.parametrize("option", ["help", "labels"])
def test_help_or_a_label_for_a_parameter_the_function_lacks_is_refused(tmp_path: Path, option: str) -> None:
    from mieruka.errors import ConfigError

    app = mieruka.App("i18n", home=str(tmp_path / "home"))

    def admissions(ward: str = "A1", day: int = 1) -> int:
        return 42

    with pytest.raises(
        ConfigError, match=r"task 'admissions': .* for 'wrad', which is not a parameter \(its parameters: ward, day\)"
    ):
        app.task(**{option: {"ward": "Ward", "wrad": "Ward"}})(admissions)
    assert "admissions" not in app.tasks
    with pytest.raises(ConfigError, match=r"task 'admissions': .* keyed by the parameters' names"):
        app.task(**{option: {1: "Ward"}})(admissions)


def test_an_authors_string_must_be_a_text_or_texts_by_language(tmp_path: Path) -> None:
    from mieruka.errors import ConfigError

    app = mieruka.App("i18n", home=str(tmp_path / "home"))
    with pytest.raises(ConfigError, match="texts by language"):
        app.task(name="noop", title={"en": 3})(lambda: None)
    with pytest.raises(ConfigError, match="texts by language"):
        app.task(name="noop", title={})(lambda: None)


def test_the_command_line_sets_a_users_language(tmp_path: Path) -> None:
    from mieruka.auth.service import Auth
    from mieruka.settings import Settings
    from tests.conftest import mieruka_cli

    home = tmp_path / "home"
    assert mieruka_cli(home, "users", "add", "ada", "--password-stdin", stdin=PASSWORD).returncode == 0
    done = mieruka_cli(home, "users", "language", "ada", "ru-RU")
    assert done.returncode == 0 and "ru" in done.stdout, done.stderr
    refused = mieruka_cli(home, "users", "language", "ada", "tlh")
    assert refused.returncode != 0 and "zh-Hans" in refused.stderr
    auth = Auth.from_settings(Settings.load(overrides={"home": str(home)}))
    try:
        assert auth.languages.all() == {"ada": "ru"}
    finally:
        auth.close()


def test_the_account_page_shows_and_saves_the_users_language(client: TestClient) -> None:
    csrf = login(client, "vic")
    page = client.get("/account", headers={"Accept-Language": "ja"}).text
    section = re.search(r'<section id="language">.*?</section>', page, re.S)
    assert section and '<option value="" selected>' in section.group(0), page
    saved = client.post("/language", data={CSRF_FIELD: csrf, "language": "ru", "next": "/account"})
    assert saved.status_code == 200 and '<html lang="ru"' in saved.text
    assert '<option value="ru" lang="ru" selected>Русский</option>' in saved.text.split('id="language"')[1]


def test_the_example_of_docs_i18n_shows_each_reader_their_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (Path(__file__).parents[2] / "docs" / "i18n.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(code) >= 2
    monkeypatch.setenv("MIERUKA_HOME", str(tmp_path / "home"))
    namespace: dict[str, object] = {}
    exec(compile("\n".join(code), "docs/i18n.md", "exec"), namespace)  # its blocks in order, as a reader would
    app = namespace["app"]
    assert isinstance(app, mieruka.App)
    app.configure(executor="threads", workers=1)  # defined in no module: worker processes could not import it
    with TestClient(app.asgi()) as client:
        ja = {"Accept-Language": "ja", "Accept": "text/html"}
        task = client.get("/tasks/admissions", headers=ja).text
        assert "日次入院数" in task and "1日の入院数を数えます。" in task and "病棟コード" in task
        board = client.get("/dashboards/wards", headers=ja).text
        assert "病棟" in board and "使用中の病床" in board
        assert "Beds in use" in client.get("/dashboards/wards", headers={"Accept": "text/html"}).text
        discharges = client.get("/tasks/discharges", headers=ja).text
        assert "1日の退院数を数えます。" in discharges and "病棟コード。" in discharges


def test_the_japanese_quick_start_runs_the_same_commands_as_the_readme() -> None:
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    japanese = (root / "docs" / "ja" / "quickstart.md").read_text(encoding="utf-8")

    def commands(text: str) -> list[str]:
        return re.findall(r"```bash\n(.*?)```", text, re.S)

    assert commands(japanese) == commands(quick_start) != []
    for image in re.findall(r"\]\(([^)]+\.png)\)", japanese):
        assert (root / "docs" / "ja" / image).resolve().is_file(), image


def test_the_apps_title_per_language_and_a_controls_question_in_the_readers(tmp_path: Path) -> None:
    from mieruka import controls

    app = mieruka.App({"en": "Lab", "ja": "ラボ"}, home=str(tmp_path / "home"), executor="threads", workers=1)

    @app.task
    def reset() -> None:
        return None

    button = controls.button(reset, title={"en": "Reset", "ja": "リセット"}, confirm=None, dangerous=True)
    app.dashboard("panel", [button])
    with TestClient(app.asgi()) as client:
        page = client.get("/jobs", headers={"Accept-Language": "ja", "Accept": "text/html"}).text
        assert "ラボ" in page and "Lab" not in page
        assert client.get("/openapi.json").json()["info"]["title"] == "Lab"
    from mieruka.i18n import LANGUAGE

    token = LANGUAGE.set("ja")  # as in a request; undone, or the tests after this one would be in Japanese
    try:
        assert "リセット" in app.dashboards.get("panel").controls[0].question
    finally:
        LANGUAGE.reset(token)


def test_a_docstring_gives_the_description_in_other_languages_in_sections(tmp_path: Path) -> None:
    app = mieruka.App("i18n", home=str(tmp_path / "home"), executor="threads", workers=1)

    @app.task
    def admissions(ward: str = "A1") -> int:
        """Counts the admissions of a day.

        Args:
            ward: The ward's code.

        ja:
            1日の入院数を数えます。

        Returns:
            How many.
        """
        return 42

    with TestClient(app.asgi()) as client:
        page = client.get("/tasks/admissions", headers={"Accept-Language": "ja", "Accept": "text/html"}).text
        assert "1日の入院数を数えます。" in page and "Counts the admissions" not in page
        described = client.get("/api/tasks/admissions").json()
        assert described["description"] == "Counts the admissions of a day."
        assert described["params_schema"]["properties"]["ward"]["description"] == "The ward's code."


def test_a_cards_summary_joins_a_descriptions_lines_as_its_language_writes() -> None:
    from mieruka.web.ui.render import summary

    assert summary("挨拶をします。すぐに\n答えるタスクです。\n\n次の段落") == "挨拶をします。すぐに答えるタスクです。"
    assert summary("回答します\n  （すぐに）") == "回答します（すぐに）"
    assert summary("Say hello: a quick\ntask that answers.") == "Say hello: a quick task that answers."
    assert summary("Привет,\nмир") == "Привет, мир"
    assert summary("挨拶 hello\nworld です") == "挨拶 hello world です"
