"""Find an App from a reference: "package.module:app", "path/to/file.py:app" or "path/to/file.py"."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .app import App


def load_app(ref: str) -> App:
    from .app import App

    target, _, attr = ref.partition(":")
    module = _import_target(target)
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise ConfigError(f"{ref!r}: {attr!r} is not a mieruka.App in {target}")
        return app
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise ConfigError(f"{ref!r}: found {len(apps)} mieruka.App objects; name one as {target}:NAME")
    return apps[0]


def _import_target(target: str) -> object:
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"no such file: {target}")
        path = path.resolve()
        # One module per file: two apps named app.py in different folders are different apps.
        name = f"_mieruka_app_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        # The app's folder goes on sys.path so that its own imports (helpers beside it) work.
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ConfigError(f"cannot load {target}: {_where(exc, path)}{type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise ConfigError(f"cannot import {target!r}: no module named {exc.name!r}") from None
        raise ConfigError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc


def _where(exc: BaseException, path: Path) -> str:
    """ "line N: " of the deepest frame in the app's own file, to point at the mistake."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"line {exc.lineno}: "
    return f"line {lines[-1]}: " if lines else ""
