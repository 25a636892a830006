"""The `mieruka` command speaks its user's language (issue 22): the setting `language` when one is
set, else the locale's (LANG=ja_JP.UTF-8), else English; a server it starts still serves each
request in the request's language and runs its jobs in English."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from mieruka.cli import told
from mieruka.errors import DatabaseUnavailable, MissingExtraError
from mieruka.i18n import LANGUAGE
from mieruka.store import outage
from tests.conftest import ServerProcess, cli, free_port
from tests.servers.test_store_startup import assert_one_line, mieruka
from tests.servers.test_store_startup import unwritable_folder as unwritable_folder  # a fixture

JAPANESE = {"LANG": "ja_JP.UTF-8"}
ENGLISH = {"LANG": "C.UTF-8"}


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


def test_the_start_up_refusals_of_mieruka_run_are_in_the_users_language(
    tmp_path: Path, unwritable_folder: tuple[Path, list[str]]
) -> None:
    """What stops `mieruka run` before it serves is one line in the user's language, also when it
    is raised outside the command's own code (settings, the app's loader, the database's checks,
    the engine's start), and in English under LANG=C."""
    run = ["run", "tests/jobs.py:app", "--home", str(tmp_path / "home")]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        said = assert_one_line(mieruka([*run, "--port", port], settings=JAPANESE))
        assert said == f"mieruka: 127.0.0.1 のポート {port} はすでに使われています（別のサーバーですか？）。" + (
            "それを止めるか、--port で別のポートを指定してください"
        )
        assert_one_line(
            mieruka([*run, "--port", port], settings=ENGLISH), f"port {port} on 127.0.0.1 is already in use"
        )
        demo = ["demo", "--home", str(tmp_path / "demo"), "--port", port]
        assert_one_line(mieruka(demo, settings=JAPANESE), f"127.0.0.1 のポート {port} はすでに使われています")
    missing = ["run", "no/such/app.py", "--home", str(tmp_path / "home")]
    said = assert_one_line(mieruka(missing, settings=JAPANESE))
    assert said == "mieruka: ファイルがありません: no/such/app.py"
    assert assert_one_line(mieruka(missing, settings=ENGLISH)) == "mieruka: no such file: no/such/app.py"
    # A setting the command cannot read is said in the locale's language: the setting `language`
    # may be in the same unreadable settings.
    workers = {"MIERUKA_WORKERS": "abc"}
    said = assert_one_line(mieruka(run, settings={**JAPANESE, **workers}))
    assert said == "mieruka: 設定 workers には int の値を指定してください（指定された値: 'abc'）"
    said = assert_one_line(mieruka(run, settings={**ENGLISH, **workers}))
    assert said == "mieruka: setting workers expects a int, got 'abc'"
    said = assert_one_line(mieruka(run, settings={**ENGLISH, **workers, "MIERUKA_LANGUAGE": "ru"}))
    assert said == "mieruka: параметр workers ожидает значение типа int, получено 'abc'"
    folder, as_user = unwritable_folder
    home = ["run", "tests/jobs.py:app", "--home", str(folder), "--port", str(free_port())]
    said = assert_one_line(mieruka(home, as_user, JAPANESE), str(folder))
    assert said.startswith(f"mieruka: データベース {folder / 'mieruka.db'} を使えません: このユーザーはフォルダー"), (
        said
    )
    assert_one_line(mieruka(home, as_user, ENGLISH), str(folder), "may not write in the folder")
    # Checked before the server starts (it reads them again in a context of its own, in English).
    bus = {"MIERUKA_EVENT_BUS": "kafka://broker"}
    said = assert_one_line(mieruka(run, settings={**JAPANESE, **bus}))
    assert said == "mieruka: イベントバス 'kafka://broker' は不明です。'memory' か redis:// の URL を指定してください"
    sign_in = {"MIERUKA_OIDC_PROVIDERS": '[{"id": "x", "issuer": "https://id.example"}]'}
    said = assert_one_line(mieruka(run, settings={**JAPANESE, **sign_in}))
    assert said == "mieruka: oidc_providers[0]: client_id は必須です（文字列）"


def test_the_cores_errors_keep_english_and_the_command_says_them_in_its_language() -> None:
    """A database that does not answer and a missing optional dependency are raised in English
    (the API answers them, the server logs them, whatever the request's language); the command
    says them in its own."""
    problem = DatabaseUnavailable(outage.shown("sqlite:////data/mieruka.db"), "database is locked")
    missing = MissingExtraError("The Celery executor", "celery")
    assert told(problem) == problem.message
    assert problem.message == "the database (file /data/mieruka.db) is unreachable: database is locked; retrying"
    assert told(missing) == missing.message
    assert missing.message == "The Celery executor needs an optional dependency: pip install 'mieruka[celery]'"
    speaking = LANGUAGE.set("ja")
    try:
        assert DatabaseUnavailable(problem.database, problem.reason).message == problem.message
        assert MissingExtraError("The Celery executor", "celery").message == missing.message
        japanese = "データベース（ファイル /data/mieruka.db）に接続できません: database is locked。再試行しています"
        assert told(problem) == japanese
        assert told(missing) == (
            "Celery エグゼキューター にはオプションの依存パッケージが必要です: pip install 'mieruka[celery]'"
        )
    finally:
        LANGUAGE.reset(speaking)
