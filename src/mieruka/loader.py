"""Find an App from a reference: "package.module:app", "path/to/file.py:app" or "path/to/file.py"."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .i18n import _

if TYPE_CHECKING:
    from .app import App


def load_app(ref: str) -> App:
    from .app import App

    target, _colon, attr = ref.partition(":")
    module = _import_target(target)
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise ConfigError(
                _("%(ref)s: %(name)s is not a mieruka.App in %(target)s", ref=repr(ref), name=repr(attr), target=target)
            )
        return app
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise ConfigError(
            _(
                "%(ref)s: found %(count)s mieruka.App objects; name one as %(target)s:NAME",
                ref=repr(ref),
                count=len(apps),
                target=target,
            )
        )
    return apps[0]


def _import_target(target: str) -> object:
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError(_("no such file: %(path)s", path=target))
        path = path.resolve()
        # One module per file: two apps named app.py in different folders are different apps.
        name = f"_mieruka_app_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        # The app's folder goes on sys.path so that its own imports (helpers beside it) work.
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(_("cannot load %(target)s", target=target))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            error = f"{type(exc).__name__}: {exc}"
            line = _line(exc, path)
            if line is None:
                raise ConfigError(_("cannot load %(target)s: %(error)s", target=target, error=error)) from exc
            raise ConfigError(
                _("cannot load %(target)s: line %(line)s: %(error)s", target=target, line=line, error=error)
            ) from exc
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise ConfigError(
                _("cannot import %(target)s: no module named %(name)s", target=repr(target), name=repr(exc.name))
            ) from None
        raise ConfigError(_cannot_import(target, exc)) from exc
    except Exception as exc:
        raise ConfigError(_cannot_import(target, exc)) from exc


def _cannot_import(target: str, exc: Exception) -> str:
    error = f"{type(exc).__name__}: {exc}"
    return _("cannot import %(target)s: %(error)s", target=repr(target), error=error)


def _line(exc: BaseException, path: Path) -> int | None:
    """The line of the deepest frame in the app's own file, to point at the mistake."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.lineno
    return lines[-1] if lines and lines[-1] is not None else None
