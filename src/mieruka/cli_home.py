"""Which data directory a command uses, as every command says it (`--home`, its help, the origin)."""

from __future__ import annotations

from .i18n import _
from .settings import Settings

HOME_HELP = "data directory (default: MIERUKA_HOME, else the config file's home, else ./.mieruka)"


def home_origin(settings: Settings, flag: str | None) -> str:
    """Which rule chose the data directory, by the one rule of every command: --home, else
    MIERUKA_HOME, else the config file's `home`, else ./.mieruka."""
    if flag:
        return _("from %(option)s", option="--home")
    if settings.home == Settings().home:
        return _("the default home; --home or MIERUKA_HOME to change")
    return _("from MIERUKA_HOME or the config file")


def where_data_lives(settings: Settings, flag: str | None) -> str:
    from .store.check import shown_url

    if settings.database_url:
        return _(
            "data in %(folder)s (%(origin)s), database %(url)s",
            folder=settings.home_path,
            origin=home_origin(settings, flag),
            url=shown_url(settings.database_url),
        )
    return _("data in %(folder)s (%(origin)s)", folder=settings.home_path, origin=home_origin(settings, flag))
