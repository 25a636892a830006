"""One Jinja environment for every page, so each page gets the same header (user, presence, CSRF
field of the logout form) and the same filters, whichever router renders it."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi.templating import Jinja2Templates
from jinja2 import FileSystemBytecodeCache, pass_context
from jinja2.bccache import Bucket

from ... import i18n
from ...runtime import Runtime
from ..access import may_change, may_run
from ..assets import static_url
from ..csrf import csrf_input, page_csrf_token
from ..identity import current_user
from ..languages import before_login
from . import formats, render

TEMPLATES = Path(__file__).parent.parent / "templates"


def _parsed(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class CompiledTemplates(FileSystemBytecodeCache):
    """The templates as compiled by an earlier server or app, in Jinja's folder for its compiled
    templates (`$TMPDIR/_jinja2-cache-UID`, which Jinja makes the user's own and checks is): compiling
    them is half a second of CPU, and a server compiled each page it showed again at each start. A
    compiled template is used for the same source, file and environment settings only (its key
    holds what changes the code Jinja makes from a source)."""

    def __init__(self, env: jinja2.Environment, directory: str | None = None) -> None:
        super().__init__(directory)
        settings = (
            jinja2.__version__,
            sorted(env.extensions),
            getattr(env, "newstyle_gettext", False),
            env.autoescape if isinstance(env.autoescape, bool) else env.autoescape.__qualname__,
            env.block_start_string,
            env.block_end_string,
            env.variable_start_string,
            env.variable_end_string,
            env.comment_start_string,
            env.comment_end_string,
            env.line_statement_prefix,
            env.line_comment_prefix,
            env.trim_blocks,
            env.lstrip_blocks,
            env.newline_sequence,
            env.keep_trailing_newline,
            env.optimized,
            env.is_async,
            getattr(env.finalize, "__qualname__", None),
        )
        self.settings = hashlib.sha1(repr(settings).encode()).hexdigest()

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        return super().get_cache_key(f"{self.settings}|{name}", filename)

    # A page never fails for its cache: a file that cannot be read is compiled again, and one that
    # cannot be written (a full disk, the folder removed by a cleaner) is left unwritten.
    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        with contextlib.suppress(Exception):
            super().dump_bytecode(bucket)


def compiled_templates(env: jinja2.Environment) -> CompiledTemplates | None:
    """The cache of compiled templates, None where there is no folder of the user's own for it (each
    start then compiles the templates it shows, as before)."""
    try:
        return CompiledTemplates(env)
    except (OSError, RuntimeError):
        return None


def page_templates(runtime: Runtime) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    # Newstyle gettext: `_("Refreshed %(when)s", when=x)` escapes the values and formats the
    # translation of the request's language (a contextvar), so one compiled template serves all.
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(i18n.gettext_, i18n.ngettext_, newstyle=True)  # type: ignore[attr-defined]
    env.globals["html_lang"] = i18n.current_language
    env.globals["js_messages"] = i18n.js_messages
    env.globals["languages"] = i18n.LANGUAGES

    @pass_context
    def own_language(context: Any) -> str | None:
        """The reader's own language setting (the account page), None: the browser's."""
        who = current_user(context)
        return runtime.auth.languages.of(who.user_id) if who is not None and who.user_id is not None else None

    @pass_context
    def browser_language(context: Any) -> str:
        """The name of the language the reader's browser asks for (else the server's)."""
        tag = before_login(context["request"], runtime.settings.language)
        return i18n.BY_TAG[tag].name

    env.globals["own_language"] = own_language
    env.globals["browser_language"] = browser_language
    zone = runtime.settings.zone
    # Times, sizes, durations and numbers as the reader's language writes them (formats.py).
    env.filters["local_time"] = lambda v: formats.local_time(v, zone)
    env.filters["iso_local"] = lambda text: formats.local_time(_parsed(text), zone)
    env.filters["utc"] = render.utc_title
    env.filters["log_text"] = render.log_text
    env.filters["segment"] = lambda text: quote(str(text), safe="")  # one path segment, "/" too
    env.filters["size"] = formats.size
    env.filters["duration"] = formats.duration
    env.filters["number"] = formats.number
    env.filters["localized"] = i18n.localized  # an author's string given per language
    env.filters["summary"] = lambda value: render.summary(i18n.localized(value))
    # Parameters shown as JSON keep their own script (見える化, not \u898b...).
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    env.globals["app_title"] = runtime.title
    env.globals["timezone"] = runtime.settings.timezone
    env.globals["static_url"] = static_url
    # The login page says why nobody can log in yet (asked only when that page is shown).
    env.globals["server_has_users"] = runtime.auth.accounts.has_users
    env.globals["csrf_input"] = csrf_input
    env.globals["csrf_token"] = page_csrf_token
    env.globals["current_user"] = current_user
    env.globals["may_change"] = may_change
    env.globals["may_run"] = may_run
    env.globals["online_now"] = lambda: runtime.auth.presence.online()
    # Open pages say they are still open well within the presence expiry (default every minute).
    env.globals["heartbeat_seconds"] = max(5, min(60, int(runtime.settings.presence_expiry / 3)))
    env.bytecode_cache = compiled_templates(env)  # last: its key reads the settings made above
    return templates
