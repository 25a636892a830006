"""`App`: where tasks, pipelines, sources, dashboards, streams and pools are declared.

What runs them (store, engine, accounts, live hub) is the app's `Runtime`, built by `wiring`;
the run-time methods here (start, submit, asgi, serve, ...) delegate to it."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import worker_mode
from .core.controls import Control, bind
from .core.dashboards import Chart, Dashboard, DashboardRegistry, check_name
from .core.job import JobRecord
from .core.streams import StreamSpec
from .core.task import Task, TaskRegistry, make_task
from .durations import parse_duration
from .errors import ConfigError
from .i18n import Text, text
from .notify.rules import Rule as NotifyRule
from .settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .auth.service import Auth
    from .engine import Engine
    from .live.hub import Live
    from .pools.base import Pool, PoolHooks
    from .runtime import Runtime
    from .sources.source import Source

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """A set of tasks served as a REST API with a durable job queue.

    >>> import mieruka
    >>> app = mieruka.App("Lab tools")
    >>> @app.task(timeout="10m", retries=2)
    ... def align(reads: mieruka.File, min_quality: int = 20, job: mieruka.Job = None) -> dict:
    ...     '''Align reads to a reference genome.'''
    ...     job.progress(0.5, "aligning")
    ...     return {"mapped": 0.97}

    Serve it with `mieruka run myapp.py`, or embed it: `with app: app.submit("align", ...)`.
    """

    def __init__(self, title: Text = "mieruka", *, description: Text = "", **settings: Any) -> None:
        self.title = text(title, "the app's title")  # per language too: {"en": "Lab", "ja": "ラボ"}
        self.description = text(description, "the app's description")
        self.tasks = TaskRegistry()
        self.dashboards = DashboardRegistry()
        self.streams: dict[str, StreamSpec] = {}
        self._sources: Any = None  # a SourceRegistry, made on first use (sources/ imports SQLAlchemy)
        self._overrides = settings
        self._settings: Settings | None = None
        self._runtime: Runtime | None = None
        caller = sys._getframe(1).f_globals
        self._module = caller.get("__name__", "")
        self._file = caller.get("__file__")
        self.ref: str | None = None
        self.pools: dict[str, Pool] = {}
        # Whether anyone has the web UI open; an idle compute pool is only stopped while nobody is.
        # None: presence decides (app.auth.presence.anyone_online(), users seen lately).
        self.anyone_online: Callable[[], bool] | None = None
        self._notify: list[tuple[str | None, NotifyRule]] = []

    # -- declaring -----------------------------------------------------------------------------
    @overload
    def task(self, func: F, /) -> F: ...

    @overload
    def task(self, func: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def task(self, func: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Declare a task. Options: name, title, description (else the docstring's), help (the
        parameters' help beside the docstring's: {"sample": "Sample id"}), labels (their form
        fields' labels, else made from their names: {"sample": "Sample"}), timeout ("10m"), retries,
        retry_backoff, priority, concurrency, queue, quick, every ("1m") or cron ("*/5 * * * *"),
        timezone, keep (max age of finished jobs, "7d"), keep_count, allow (role and user names that
        may see and run the task, e.g. ["operator", "ada"]) and notify (who is told when its jobs
        fail, succeed or run long: `mieruka.notify.on_failure("mail:ops@example.org")`, a list of
        rules, or {"failed": "mail:ops@example.org", "long": "slack:https://...", "longer_than":
        "10m"}; see docs/notifications.md).

        Title, description and each help and label are a text, or texts by language shown to each reader in
        theirs (docs/i18n.md): `title={"en": "Align reads", "ja": "リードの整列"}`."""

        def register(f: F) -> F:
            self.tasks.add(make_task(f, **options))
            return f

        return register(func) if func is not None else register

    def pool(
        self,
        name: str,
        hooks: PoolHooks,
        *,
        queues: list[str] | None = None,
        idle_stop: str | float | None = None,
        start_timeout: str | float = "15m",
    ) -> Pool:
        """Declare a compute pool for the Celery executor: workers serving `queues` (default: the
        queue named like the pool), started by `hooks` when a job arrives for them and stopped
        after `idle_stop` ("15m") without queued or running jobs while nobody is online.

        >>> from mieruka.pools import ShellCommand
        >>> app = App("lab")
        >>> gpu = app.pool("gpu", ShellCommand("systemctl start gpu-workers", "systemctl stop gpu-workers"),
        ...                idle_stop="15m")
        """
        from .durations import parse_duration
        from .pools.base import Pool

        if name in self.pools:
            raise ConfigError(f"a pool named {name!r} is already declared")
        declared = Pool(
            name=name,
            hooks=hooks,
            queues=tuple(queues or [name]),
            idle_stop=parse_duration(idle_stop) if idle_stop is not None else None,
            start_timeout=parse_duration(start_timeout) or 900.0,
        )
        self.pools[name] = declared
        return declared

    def notify(
        self,
        rule: NotifyRule,
        *,
        name: str | None = None,
        tasks: list[str] | None = None,
        tags: list[str] | None = None,
        pools: list[str] | None = None,
        sources: list[str] | None = None,
    ) -> NotifyRule:
        """Declare a notification rule of the whole app, scoped by task, tag, pool or source (none:
        everything): `app.notify(mieruka.notify.on_pool_change("teams:https://..."), pools=["gpu"])`.
        Admins see it on /notifications; see docs/notifications.md."""
        scoped = rule.scoped(tasks=tasks or (), tags=tags or (), pools=pools or (), sources=sources or ())
        self._notify.append((name, scoped))
        return scoped

    @property
    def notifications(self) -> dict[str, NotifyRule]:
        """Every rule declared in code by name: the app's (`app.notify`) and its tasks' (`notify=`)."""
        found: dict[str, NotifyRule] = {}
        for index, (name, rule) in enumerate(self._notify, 1):
            found[name or f"app:{index}"] = rule
        for task in self.tasks:
            for index, rule in enumerate(task.notify, 1):
                found[f"task:{task.name}" + (f":{index}" if len(task.notify) > 1 else "")] = rule
        return found

    @overload
    def pipeline(self, func: F, /) -> F: ...

    @overload
    def pipeline(self, func: None = None, /, *, parallel: int | None = None, **options: Any) -> Callable[[F], F]: ...

    def pipeline(
        self, func: F | None = None, /, *, parallel: int | None = None, **options: Any
    ) -> F | Callable[[F], F]:
        """Declare a pipeline: a task whose function adds steps to its `mieruka.Pipeline`
        parameter. Up to `parallel` steps run at once (default: the CPU count, at most 4); the
        other options are the task's (timeout, retries, ...). See docs/pipelines.md.

        >>> @app.pipeline(parallel=2)
        ... def analyse(reads: mieruka.File, *, pipe: mieruka.Pipeline) -> None:
        ...     checked = pipe.step(validate, reads)
        ...     pipe.shell("wc -l {f}", f=checked.file("clean.fa"))
        """

        from .pipeline.task import pipeline_function  # and the pipeline runner: only for apps with pipelines

        def register(f: F) -> F:
            self.tasks.add(make_task(pipeline_function(self, f, parallel), **options))
            return f

        return register(func) if func is not None else register

    def snakemake(
        self,
        snakefile: str | Path,
        /,
        *,
        name: str | None = None,
        targets: list[str] | None = None,
        config: dict[str, Any] | None = None,
        cores: int = 1,
        workdir: str | Path | None = None,
        isolate: bool = True,
        **options: Any,
    ) -> None:
        """A task that runs an existing Snakefile unchanged, as `snakemake` would in `workdir`
        (default: the Snakefile's folder), each job writing into a folder of its own (see
        `Pipeline.snakemake`). Targets, config and cores come from its form (these are the
        defaults; config overrides the Snakefile's `configfile:`). Each rule execution shows as a
        step. Relative paths are the app file's folder's. Needs the `snakemake` extra. The other
        options are the task's (timeout, retries, ...)."""
        from .pipeline.snakemake import workflow_builder
        from .pipeline.task import pipeline_function

        path = self.path(snakefile)
        builder = workflow_builder(
            path,
            list(targets or []),
            dict(config or {}),
            cores,
            self.path(workdir) if workdir is not None else None,
            isolate,
        )
        self.tasks.add(
            make_task(
                pipeline_function(self, builder, None), name=name or path.parent.name.replace(" ", "_"), **options
            )
        )

    @property
    def folder(self) -> Path:
        """The app file's folder: relative paths the app declares (a Snakefile, a source's file)
        resolve against it, from whichever folder the app is imported (a step's, a worker's)."""
        return Path(self._file).resolve().parent if self._file else Path.cwd()

    def path(self, value: str | Path) -> Path:
        """`value` as an absolute path, a relative one taken from the app file's folder."""
        path = Path(value).expanduser()
        return (path if path.is_absolute() else self.folder / path).resolve()

    def get_task(self, name: str) -> Task:
        return self.tasks.get(name)

    @property
    def sources(self) -> Any:
        """The declared data sources (a `SourceRegistry`)."""
        if self._sources is None:
            from .sources.source import SourceRegistry

            self._sources = SourceRegistry()
        return self._sources

    @overload
    def source(self, name: str, /, **options: Any) -> Source: ...

    @overload
    def source(self, name: F, /, **options: Any) -> F: ...

    @overload
    def source(self, name: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def source(self, name: str | F | None = None, /, **options: Any) -> Source | F | Callable[[F], F]:
        """Declare a data source: a table refreshed on the server and pushed to dashboards.

        >>> census = app.source("census", url="sqlite:///ward.db", every="10s",
        ...                     sql="SELECT ward, COUNT(*) AS patients FROM stays WHERE left_at IS NULL "
        ...                         "AND ward <> :closed GROUP BY ward", params={"closed": "X"})
        >>> beds = app.source("beds", odbc="DRIVER={Symfoware ODBC};...", sql="SELECT ...", params=[7])
        >>> plan = app.source("plan", file="plan.xlsx")        # read again when the file changes
        >>> @app.source(every="1m", transform=lambda df: df.sort_values("ward"))
        ... def staff() -> list[dict]: return [{"ward": "A", "nurses": 4}]

        Options: sql= with url= (SQLAlchemy) or odbc= (raw ODBC connection string) and params= (bound,
        never formatted into the text); file= (CSV, Excel, Parquet); a function returning a DataFrame,
        records or a dict of columns. every= ("10s") or cron= with timezone=, else on demand; timeout=,
        max_rows= (guardrails; defaults from settings); transform= (a pandas function); title= and
        description= (one text, or one per language).
        Returns the `Source` (a decorated function is returned unchanged).
        """
        from .sources.source import make_source

        if options.get("file") is not None:
            options["file"] = self.path(options["file"])
        if isinstance(options.get("url"), str):
            options["url"] = _sqlite_url(options["url"], self)
        for key in ("title", "description"):  # per language too: {"en": "Beds", "ja": "病床"}
            if options.get(key) is not None:
                options[key] = text(options[key], f"source: {key}")
        if isinstance(name, str):
            source = make_source(name, **options)
            self.sources.add(source)
            return source

        def register(func: F) -> F:
            source_name = options.pop("name", None) or func.__name__
            self.sources.add(make_source(source_name, function=func, **options))
            _tag(func, source_name)
            return func

        return register(name) if name is not None else register

    def dashboard(
        self,
        name: str,
        charts: list[Chart | Control],
        *,
        title: Text | None = None,
        columns: int = 2,
        description: Text = "",
        allow: list[str] | tuple[str, ...] | None = None,
        public: bool = False,
    ) -> Dashboard:
        """Declare a dashboard: a titled grid of charts (see `mieruka.charts`) and controls (see
        `mieruka.controls`: their tasks declared before), served at /dashboards/{name}.
        `allow` lists the role and user names that may see it (default: every viewer); `public=True`
        shows it to anyone without a login, read-only, with its own live data and nothing else (a
        wall screen; an admin can also make a display link for any dashboard). `title`, `description`
        and the charts' and controls' titles are a text, or texts by language (docs/i18n.md)."""
        board = Dashboard(
            name,
            text(title, f"dashboard {name!r}: title") or name.replace("_", " ").capitalize(),
            tuple(bind(c, self.tasks, self.streams) if isinstance(c, Control) else c for c in charts),
            columns,
            text(description, f"dashboard {name!r}: description"),
            tuple(allow) if allow is not None else None,
            public,
        )
        self.dashboards.add(board)
        return board

    @overload
    def stream(self, func: F, /) -> F: ...

    @overload
    def stream(
        self,
        func: None = None,
        /,
        *,
        every: str | float | None = 1.0,
        window: str | float = 60.0,
        keep: int = 0,
        name: str | None = None,
        title: Text = "",
        description: Text = "",
    ) -> Callable[[F], F]: ...

    def stream(
        self,
        func: F | None = None,
        /,
        *,
        every: str | float | None = 1.0,
        window: str | float = 60.0,
        keep: int = 0,
        name: str | None = None,
        title: Text = "",
        description: Text = "",
    ) -> F | Callable[[F], F]:
        """Declare a stream: a function called every `every` seconds (or a generator) whose values,
        a dict of series -> number (optionally with a "time"), feed rolling charts in every browser.

        >>> @app.stream(every=1.0)
        ... def load() -> dict[str, float]:
        ...     return {"cpu": psutil.cpu_percent(), "memory": psutil.virtual_memory().percent}

        Served at /streams/{name}; put it on a dashboard with `charts.stream(load)`.
        """

        def register(f: F) -> F:
            stream_name = check_name("stream", name or f.__name__)
            if stream_name in self.streams:
                raise ConfigError(f"stream {stream_name!r} is declared twice")
            window_s = parse_duration(window)
            self.streams[stream_name] = StreamSpec(
                stream_name,
                f,
                parse_duration(every),
                window_s or 60.0,
                keep,
                text(title, f"stream {stream_name!r}: title") or stream_name.replace("_", " "),
                text(description, f"stream {stream_name!r}: description"),
            )
            _tag(f, stream_name)
            return f

        return register(func) if func is not None else register

    @property
    def live(self) -> Live:
        """Sources, tiles and streams of the running app."""
        return self.runtime.live

    # -- settings ------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load(self._overrides)
        return self._settings

    def configure(self, **overrides: Any) -> None:
        """Override settings (CLI flags do this); only before the engine starts."""
        if self.running:
            raise ConfigError("configure() must be called before the engine starts")
        self._settings = self.settings.with_overrides(**overrides)
        if self._runtime is not None:  # built from the old settings (another database, perhaps)
            runtime, self._runtime = self._runtime, None
            runtime.stop()

    def app_ref(self) -> str:
        """How worker processes import this app."""
        if self.ref:
            return self.ref
        module = sys.modules.get(self._module)
        attr = next((k for k, v in vars(module).items() if v is self), None) if module else None
        if attr is None:
            raise ConfigError(
                "cannot find this App at module level; worker processes import it from "
                "there (assign it to a global variable, e.g. app = mieruka.App(...))"
            )
        if self._module == "__main__" or self._module.startswith("_mieruka_app_"):
            if not self._file:
                raise ConfigError("an App defined interactively cannot start worker processes")
            return f"{Path(self._file).resolve()}:{attr}"
        return f"{self._module}:{attr}"

    # -- running -------------------------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        """What runs this app: settings, engine, accounts, live hub (made on first use)."""
        settings = self.settings
        if self._runtime is not None and self._runtime.settings is not settings and not self._runtime.running:
            # Built from settings since replaced (configure(), or reloaded): its accounts may be another database's.
            runtime, self._runtime = self._runtime, None
            runtime.stop()
        if self._runtime is None:
            from .wiring import build_runtime

            self._runtime = build_runtime(self, settings)
        return self._runtime

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def running(self) -> bool:
        return self._runtime is not None and self._runtime.running

    @property
    def holds_connections(self) -> bool:
        """Whether its runtime has opened the database or started the engine (none is made to ask)."""
        return self._runtime is not None and self._runtime.holds_connections

    def start(self) -> Engine:
        """Open the store and start worker processes and the engine loop."""
        if worker_mode.IN_WORKER and not self.running:
            raise ConfigError(
                "app.start() was called while a worker imported the app; guard it with `if __name__ == '__main__':`"
            )
        if self.running:
            return self.runtime.start()
        # The store's and the engine's imports make objects that live as long as the process: no
        # collection walks them while they are made (a tenth of the start's CPU); the caller's
        # collector is as it was afterwards.
        collecting = gc.isenabled()
        gc.disable()
        try:
            from .executors.zygote_process import fork_early, passed_on

            # A script holding nothing yet (one thread, its standard streams and what its parent
            # passed on) gives its workers the app as loaded; else the runtime starts a zygote that
            # imports it afresh.
            fork_early(self, passed_on())
            return self.runtime.start()
        finally:
            if collecting:
                gc.enable()

    @property
    def auth(self) -> Auth:
        """Users, tokens, sessions, the audit log and presence (`app.auth.presence.online()`)."""
        return self.runtime.auth

    def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.stop()

    def __enter__(self) -> App:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def submit(self, task: str | Callable[..., Any], /, **params: Any) -> JobRecord:
        """Queue a job with keyword parameters; returns its record at once."""
        name = task if isinstance(task, str) else getattr(task, "__name__", str(task))
        record, _ = self.engine.submit(name, params)
        return record

    def wait(self, job: JobRecord | int, timeout: float = 60.0) -> JobRecord:
        """Block until the job has finished, and return its final record."""
        return self.engine.wait(job if isinstance(job, int) else job.id, timeout)

    def get_job(self, job_id: int) -> JobRecord:
        return self.engine.get(job_id)

    # -- web -----------------------------------------------------------------------------------
    def asgi(self) -> FastAPI:
        """The ASGI application (FastAPI): starts and stops the engine with its lifespan."""
        from .web.api import create_api

        return create_api(self.runtime)

    def serve(self, host: str | None = None, port: int | None = None) -> None:
        """Run the server in this process until interrupted."""
        if worker_mode.IN_WORKER:
            return
        if host is not None or port is not None:
            self.configure(host=host, port=port)
        from .server import serve

        serve(self.runtime)


def _sqlite_url(url: str, app: App) -> str:
    """A relative SQLite file in a URL is the app's too (sqlite:///ward.db: ward.db beside the app)."""
    scheme, sep, rest = url.partition(":///")
    if (
        not sep
        or scheme.split("+")[0] != "sqlite"
        or rest.startswith("/")
        or not rest
        or rest.startswith(":memory:")
        or rest.startswith("file:")
    ):
        return url
    path, query, params = rest.partition("?")
    return f"{scheme}:///{app.path(path)}{query}{params}"


def _tag(func: Any, name: str) -> None:
    # charts.name_of() finds the declared name of a decorated function through this attribute.
    try:
        func.__mieruka_name__ = name
    except (AttributeError, TypeError):
        pass
