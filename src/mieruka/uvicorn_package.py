"""uvicorn without its command line. Its package's `__init__` imports `uvicorn.main`, and with it
click, the reloaders (watchfiles) and multiprocessing: 44 modules and 2.2 MB that a server run from
mieruka never uses, and a twentieth of its start. `load()` makes the package without running that
`__init__`: its modules import as ever, `Config` and `Server` come from theirs, and any other name
asked of the package (`uvicorn.run`, `__version__`) runs the `__init__` then, as an import would have.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

_LOCK = threading.Lock()
_FROM_THEIR_MODULES = {"Config": "uvicorn.config", "Server": "uvicorn.server"}


def load() -> ModuleType:
    """The `uvicorn` package: the one imported already, or one whose `__init__` runs when first needed."""
    with _LOCK:
        if "uvicorn" in sys.modules:
            return sys.modules["uvicorn"]
        spec = importlib.util.find_spec("uvicorn")
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            import uvicorn

            return uvicorn
        package = importlib.util.module_from_spec(spec)
        loader = spec.loader

        def named(name: str) -> object:
            if name in _FROM_THEIR_MODULES:
                return getattr(importlib.import_module(_FROM_THEIR_MODULES[name]), name)
            with _LOCK:
                if vars(package).pop("__getattr__", None) is not None:
                    loader.exec_module(package)
            return getattr(package, name)  # AttributeError for what uvicorn does not have

        vars(package)["__getattr__"] = named
        sys.modules["uvicorn"] = package
        return package
