"""The `mieruka` command speaks its user's language (issue 22): the setting `language` when one is
set, else the locale's (LANG=ja_JP.UTF-8), else English; a server it starts still serves each
request in the request's language and runs its jobs in English."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import ServerProcess, cli

JAPANESE = {"LANG": "ja_JP.UTF-8"}


def test_a_japanese_locale_hears_japanese_and_english_stays_english(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    added = cli("users", "add", "ada", "--no-password", "--home", home, **JAPANESE)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "ada（viewer）を追加しました\n"
    assert added.stderr.startswith("mieruka: ") and "に新しいデータベースを作成しました" in added.stderr
    assert "データは" in added.stderr and "--home の指定" in added.stderr
    language = cli("users", "language", "ada", "ru", "--home", home, **JAPANESE)
    assert language.stdout == "ada の画面の言語を Русский (ru) にしました\n", language.stderr
    # A refusal is one line in the language, from the accounts' own messages too.
    missing = cli("users", "rm", "nobody", "--home", home, **JAPANESE)
    assert missing.returncode == 1 and missing.stderr == "mieruka: ユーザー 'nobody' は存在しません\n"
    nowhere = cli("tokens", "ls", "--home", str(tmp_path / "nowhere"), **JAPANESE)
    assert nowhere.returncode == 1 and "データベースがありません" in nowhere.stderr, nowhere.stderr
    wrong = cli("submit", "add", "a", "--url", "http://127.0.0.1:9", **JAPANESE)
    assert wrong.stderr == "mieruka: パラメーター 'a' が KEY=VALUE の形ではありません\n"
    # Tables, JSON and the help stay English: scripts read them, and the help is reference.
    listed = cli("users", "ls", "--home", home, **JAPANESE)
    assert listed.stdout.startswith("NAME ") and "viewer" in listed.stdout
    assert "usage: mieruka" in cli("users", "--help", **JAPANESE).stdout
    for english in ({"LANG": "C.UTF-8"}, {"LANG": "en_US.UTF-8"}, {"LANG": "zh_TW.UTF-8"}, {"LANG": ""}):
        removed = cli("users", "rm", "ada", "--home", home, **english)
        assert removed.stdout == "removed ada\n" or removed.stderr == "mieruka: no user named 'ada'\n", removed


def test_the_setting_language_comes_before_the_locale(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    russian = cli("users", "add", "ada", "--no-password", "--home", home, MIERUKA_LANGUAGE="ru", **JAPANESE)
    assert russian.stdout == "пользователь ada (viewer) добавлен\n", russian.stderr
    english = cli("users", "rm", "ada", "--home", home, MIERUKA_LANGUAGE="en", **JAPANESE)
    assert english.stdout == "removed ada\n", english.stderr
    config = tmp_path / "mieruka.toml"
    config.write_text('language = "zh-Hans"\n')
    chinese = cli(
        "users", "add", "bob", "--no-password", "--home", home, MIERUKA_CONFIG=str(config), LANG="en_US.UTF-8"
    )
    assert chinese.stdout == "已添加 bob（viewer）\n", chinese.stderr
    # GNU gettext's list of languages, read when the locale is not C.
    listed = cli("users", "rm", "bob", "--home", home, LANGUAGE="ru:en", LANG="en_GB.UTF-8")
    assert listed.stdout == "пользователь bob удалён\n", listed.stderr
    assert cli("users", "rm", "x", "--home", home, LANGUAGE="ja", LANG="C").stderr.startswith("mieruka: no user")


def test_a_server_started_in_japanese_serves_requests_in_theirs_and_runs_jobs_in_english(tmp_path: Path) -> None:
    server = ServerProcess("tests/jobs.py:app", tmp_path / "home", "--workers", "1", env=JAPANESE)
    try:
        server.wait_ready()
        said = server.output()
        assert "で公開しています" in said and "個のタスク" in said and "API ドキュメントは" in said, said
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert '<html lang="en"' in http.get("/jobs", headers={"Accept": "text/html"}).text
            assert '<html lang="ja"' in http.get("/jobs", headers={"Accept-Language": "ja"}).text
            job = http.post("/api/tasks/spoken_language/jobs", json={}).json()
            done = http.get(f"/api/jobs/{job['id']}", params={"wait": 30}).json()
            assert done["status"] == "succeeded" and done["result"] == "en", done
    finally:
        server.stop()
