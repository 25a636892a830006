"""Secrets kept out of what mieruka shows and sends: the parameters whose names say they are secret
(`secret_name`), and the passwords written inside text (`without_passwords`), as the audit log
keeps parameters and as notifications carry a job's error.

    >>> without_passwords("connect(host='db', password=hunter2) failed")
    "connect(host='db', password=(hidden)) failed"

A password ends where its notation ends it: the '@' of a URL, a closing quote or brace, a ';' or
'&' between settings, a space; a bare one also before the brackets, quotes and commas that close
what holds it. What is unsure is hidden: a bracket the password opened stays in it.
"""

from __future__ import annotations

import re
from functools import lru_cache

HIDDEN = "(hidden)"
# A parameter (or a key within one) is a secret when a word of its name is one of these, or ends
# in "token" or "key" (api_key, accessToken), or holds one of _SECRET_PARTS (dbpassword).
_SECRET_WORDS = frozenset({"pwd", "pass", "auth", "authorization", "otp", "cookie", "session", "signature"})
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "credential")
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")

# scheme://user:password@host: the password runs to the last '@' before the path (p@ss@host).
_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^/\s]*@")
# password=..., PWD={...}, --db-password='...', 'password': '...'
_KEY_PASSWORD = re.compile(
    r"""(?ix)
    (?<![\w-])[\w-]*?(?:pwd|passwd|password|passphrase)   # PWD, db_password, PGPASSWORD, --password
    (?: [ \t]*= | ["'][ \t]*: ) [ \t]*                    # = (or a quoted key's colon)
    (?P<value>
        \{ (?:[^}]|\}\})* \}                              # ODBC braces, }} a literal }
      | ' (?:[^'\\]|\\.)* '
      | " (?:[^"\\]|\\.)* "
      | (?:[^;&\s,]|,(?![\w.-]+\s*=))*                   # bare, up to the next setting
    )"""
)
_CLOSES = {")": "(", "]": "[", "}": "{", ">": "<"}
_QUOTES = "'\"`"
_SENTENCE_ENDS = ".:!?"


@lru_cache(maxsize=4096)  # asked for each parameter of each submission; names repeat
def secret_name(name: str) -> bool:
    """Whether a parameter's name says its value is a secret: password, api_key, accessToken..."""
    for word in (w.lower() for w in _WORDS.findall(name)):
        if word in _SECRET_WORDS or word.endswith(("token", "key")) or any(p in word for p in _SECRET_PARTS):
            return True
    return False


def without_passwords(text: str) -> str:
    """`text` with the passwords of URLs (scheme://user:password@host) and of settings written
    inside it (PWD=...;, password='...', "password": "...") replaced by HIDDEN, and everything
    around them kept."""
    if "@" in text:
        text = _URL_PASSWORD.sub(rf"\1{HIDDEN}@", text)
    if "=" in text or ":" in text:
        text = _KEY_PASSWORD.sub(_hide_value, text)
    return text


def _hide_value(found: re.Match[str]) -> str:
    key, value = found[0][: found.start("value") - found.start()], found["value"]
    if len(value) >= 2 and value[0] in "{'\"" and value[-1] == ("}" if value[0] == "{" else value[0]):
        return f"{key}{value[0]}{HIDDEN}{value[-1]}"
    secret = _bare_secret(value)
    return f"{key}{HIDDEN}{value[len(secret) :]}"


def _bare_secret(value: str) -> str:
    """A bare value without the brackets, quotes and commas at its end that close what holds it
    (`f(password=x)`, `'... password=x'`, `[password=x, ...]`), nor a sentence's end after them."""
    end = len(value)
    while end:
        stop = end
        while stop and value[stop - 1] in _SENTENCE_ENDS:
            stop -= 1
        if not stop or not _closes(value[:stop]):
            break
        end = stop - 1
    return value[:end]


def _closes(value: str) -> bool:
    """Whether the last character of `value` closes something opened before the value began."""
    last, before = value[-1], value[:-1]
    if last == ",":
        return True
    if last in _CLOSES:
        return before.count(_CLOSES[last]) <= before.count(last)
    if last in _QUOTES:
        return before.count(last) % 2 == 0
    return False
