"""Passwords written inside text are hidden whole, and what follows them stays: the bracket, quote,
comma or semicolon that closes what holds the password (a call, a quoted string, a connection
string) is not eaten with it ("password=hunter2)" once became "password=(hidden)")."""

from __future__ import annotations

import pytest

from mieruka.redaction import HIDDEN, without_passwords

H = HIDDEN


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("password=x)", f"password={H})"),
        ("connect(host='db', password=hunter2) failed", f"connect(host='db', password={H}) failed"),
        ("Login failed (password=hunter2).", f"Login failed (password={H})."),
        ("Login failed (password=hunter2), try again", f"Login failed (password={H}), try again"),
        ("password=hunter2.", f"password={H}"),  # a last character that closes nothing may be its own
        ("[password=hunter2]", f"[password={H}]"),
        ("<password=hunter2>", f"<password={H}>"),
        ("pwd='x'", f"pwd='{H}'"),
        ('pwd="x"', f'pwd="{H}"'),
        ("'...password=hunter2'", f"'...password={H}'"),
        ('"password=hunter2",', f'"password={H}",'),
        ("PWD=x;UID=y", f"PWD={H};UID=y"),
        ("UID=u;PWD=hunter2;X=1", f"UID=u;PWD={H};X=1"),
        ("password=x,user=y", f"password={H},user=y"),
        ("https://x.org/?password=hunter2&b=1", f"https://x.org/?password={H}&b=1"),
        ("postgresql://bob:hunter2@db/x", f"postgresql://bob:{H}@db/x"),
        ("(postgresql://bob:hunter2@db/x)", f"(postgresql://bob:{H}@db/x)"),
        ("'redis://:hunter2@cache:6379/0',", f"'redis://:{H}@cache:6379/0',"),
        ("mysql://bob:hunter2@db, then", f"mysql://bob:{H}@db, then"),
        ("{'host': 'db', 'password': 'hunter2'}", f"{{'host': 'db', 'password': '{H}'}}"),
        ('{"password": "hunter2"}', f'{{"password": "{H}"}}'),
    ],
)
def test_the_password_goes_and_what_closes_it_stays(text: str, shown: str) -> None:
    assert without_passwords(text) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("password=a(b)", f"password={H}"),  # a bracket it opens is its own
        ("pwd='it\\'s; a secret'", f"pwd='{H}'"),
        ('password="two words; and more" here', f'password="{H}" here'),
        ("DRIVER={x};PWD={a;b}}c};X=1", f"DRIVER={{x}};PWD={{{H}}};X=1"),  # an ODBC brace value, }} a literal }
        ("postgresql://bob:p@ss@db/x", f"postgresql://bob:{H}@db/x"),  # the last @ before the host
        ("PGPASSWORD=hunter2 psql", f"PGPASSWORD={H} psql"),
        ("db_password=hunter2", f"db_password={H}"),
        ("--password=hunter2", f"--password={H}"),
        ("password = hunter2", f"password = {H}"),
    ],
)
def test_the_password_is_hidden_whole(text: str, shown: str) -> None:
    assert without_passwords(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "ann@example.org wrote",
        'password authentication failed for user "bob"',
        "password: incorrect",
        "https://host:8080/x?a=1",
        "at 12:30 host=db user=bob",
        "password_file=/etc/x",
    ],
)
def test_text_without_a_password_is_left(text: str) -> None:
    assert without_passwords(text) == text


def test_a_password_at_a_lines_end_keeps_the_next_line() -> None:
    assert without_passwords("password=\nsecond line") == f"password={H}\nsecond line"
