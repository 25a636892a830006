"""Which data directory a command uses, as every command says it (`--home`, its help, the origin)."""

from __future__ import annotations

from .settings import Settings

HOME_HELP = "data directory (default: MIERUKA_HOME, else the config file's home, else ./.mieruka)"


def home_origin(settings: Settings, flag: str | None) -> str:
    """Which rule chose the data directory, by the one rule of every command: --home, else
    MIERUKA_HOME, else the config file's `home`, else ./.mieruka."""
    if flag:
        return "from --home"
    if settings.home == Settings().home:
        return "the default home; --home or MIERUKA_HOME to change"
    return "from MIERUKA_HOME or the config file"


def where_data_lives(settings: Settings, flag: str | None) -> str:
    from .wiring import shown_url

    text = f"data in {settings.home_path} ({home_origin(settings, flag)})"
    if settings.database_url:
        text += f", database {shown_url(settings.database_url)}"
    return text
