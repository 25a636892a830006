"""The `mieruka` command. Errors are one readable line on stderr and a non-zero exit code.

Its messages to people are in the language of the setting `language` when one is set, else of the
locale (LANG=ja_JP.UTF-8: Japanese), else English. Its help (argparse's), its tables and its JSON stay
English, like the API: they are reference text and what scripts read."""

from __future__ import annotations

import argparse
import contextvars
import errno
import gc
import json
import socket
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .cli_home import HOME_HELP, where_data_lives
from .errors import ConfigError, DatabaseUnavailable, MierukaError, MissingExtraError
from .i18n import ENGLISH, LANGUAGE, _, localized, ngettext
from .settings import Settings, environment_language

EXIT_ERROR = 1
EXIT_USAGE = 2


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per CPU core)")
    parser.add_argument("--home", help=HOME_HELP)
    parser.add_argument("--database-url", help="SQLAlchemy URL of the job store (default SQLite in the home)")
    parser.add_argument("--root-path", help="path prefix behind a reverse proxy, e.g. /mieruka")
    parser.add_argument("--timezone", help="time zone for shown times, e.g. Asia/Tokyo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mieruka", description="Put a web face on your Python work.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="serve an app: REST API, job queue, docs")
    run.add_argument("app", help="the app: path/to/file.py, file.py:app or package.module:app")
    _server_flags(run)

    demo = sub.add_parser("demo", help="serve the built-in demo app")
    _server_flags(demo)

    submit = sub.add_parser("submit", help="submit a job to a running server")
    submit.add_argument("task")
    submit.add_argument(
        "params",
        nargs="*",
        metavar="KEY=VALUE",
        help="parameters, before, between or after the options; values are read as JSON when "
        "they parse (3, true, [1,2]), else text",
    )
    submit.add_argument("--file", action="append", default=[], metavar="FIELD=PATH", help="upload a file")
    submit.add_argument("--wait", action="store_true", help="wait for the result; exit 1 if the job fails")
    submit.add_argument("--timeout", type=float, default=3600, help="longest wait with --wait, seconds")
    submit.add_argument("--url", help="server URL (default http://127.0.0.1:8000, or MIERUKA_URL)")

    jobs = sub.add_parser("jobs", help="list, show, follow, cancel, retry or delete jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    ls = jobs_sub.add_parser("ls", help="list jobs, newest first")
    ls.add_argument("--task")
    ls.add_argument("--status", help="e.g. running or failed,cancelled")
    ls.add_argument("--limit", type=int, default=20)
    for name, text in (
        ("show", "show one job"),
        ("cancel", "cancel a job"),
        ("retry", "retry a job"),
        ("rm", "delete a finished job"),
    ):
        action = jobs_sub.add_parser(name, help=text)
        action.add_argument("id", type=int)
    logs = jobs_sub.add_parser("logs", help="print a job's log")
    logs.add_argument("id", type=int)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--step", help="only this pipeline step's lines")
    steps = jobs_sub.add_parser("steps", help="list a pipeline job's steps")
    steps.add_argument("id", type=int)
    for action in (ls, logs, steps, *(jobs_sub.choices[n] for n in ("show", "cancel", "retry", "rm"))):
        action.add_argument("--url", help="server URL (default http://127.0.0.1:8000, or MIERUKA_URL)")
    for action in (submit, *jobs_sub.choices.values()):  # every command that talks to a server
        action.add_argument("--token", help="API token for a server with users (default MIERUKA_TOKEN)")

    from .cli_accounts import add_commands

    add_commands(sub)

    sources = sub.add_parser("sources", help="list the data sources of a running server, or refresh one")
    sources_sub = sources.add_subparsers(dest="sources_command", metavar="ACTION", required=True)
    sources_ls = sources_sub.add_parser("ls", help="every source: last refresh, rows, error")
    refresh = sources_sub.add_parser("refresh", help="refresh a source now and print its status")
    refresh.add_argument("name")
    refresh.add_argument("--wait", type=float, default=60, help="longest wait for the refresh, seconds")
    for action in (sources_ls, refresh):
        action.add_argument("--url", help="server URL (default http://127.0.0.1:8000, or MIERUKA_URL)")

    worker = sub.add_parser("worker", help="run a Celery worker for an app (executor 'celery')")
    worker.add_argument("app", help="the app: path/to/file.py, file.py:app or package.module:app")
    worker.add_argument(
        "--queues", "-Q", default="default", help="comma-separated queues to take jobs from (default: default)"
    )
    worker.add_argument("--concurrency", "-c", type=int, help="jobs at a time (default: one per CPU core)")
    worker.add_argument("--home", help=HOME_HELP)
    worker.add_argument("--database-url", help="SQLAlchemy URL of the job store, shared with the servers")
    worker.add_argument("--broker-url", help="Celery broker URL, e.g. redis://host:6379/0")
    worker.add_argument("--loglevel", default="INFO", help="Celery log level (default INFO)")
    worker.add_argument(
        "--no-supervisor",
        action="store_true",
        help="run Celery in this process; by default a small supervisor runs it and starts it again if it dies",
    )

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser("upgrade", help="create or upgrade the schema")
    upgrade.add_argument("--home", help=HOME_HELP)
    upgrade.add_argument("--database-url", help="SQLAlchemy URL of the job store (default SQLite in the home)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `submit align --file reads=r.fa reference=mm10`: argparse takes a command's positionals in
        # one run, so the parameters after an option come back unrecognised; they are parameters.
        if args.command == "submit" and not any(e.startswith("-") for e in extra):
            args.params = [*args.params, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.version:
        from . import __version__

        print(f"mieruka {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    speaking = LANGUAGE.set(_language())
    try:
        return _dispatch(args, parser)
    except MierukaError as exc:
        print(f"mieruka: {told(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        said = _said(exc, args)
        if said is None:
            raise
        print(f"mieruka: {said}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        LANGUAGE.reset(speaking)


def _language() -> str:
    """The language of the command's messages: the setting `language` when it is set (in the
    environment, or other than English in the config file), else the locale's, else English."""
    try:
        settings = Settings.load()
    except MierukaError:
        # The command says what is wrong with the settings when it reads them, in the language
        # the environment names.
        return environment_language() or ENGLISH
    if settings.language != ENGLISH:
        return settings.language
    return environment_language() or ENGLISH


def told(exc: MierukaError) -> str:
    """An error's message as the command says it, in its language. The errors of errors.py that
    the core raises, which knows no language, keep their English message for the API and the logs:
    a database that does not answer (store/outage.said), an optional dependency not installed."""
    if isinstance(exc, DatabaseUnavailable):
        from .store.outage import said

        return said(exc)
    if isinstance(exc, MissingExtraError):
        feature = _(exc.feature)  # marked with N_ where it is raised
        return _("%(feature)s needs an optional dependency: %(command)s", feature=feature, command=exc.command)
    return exc.message


def _on_its_own(call: Any, *args: Any) -> Any:
    """Run what serves or forks jobs (the server, the zygote, a worker) outside the command's
    language: each request sets its own, and jobs and background loops write in the base language."""
    return contextvars.Context().run(call, *args)


def _said(exc: Exception, args: argparse.Namespace) -> str | None:
    """A database that stopped answering, or a file this user may not write, in one line; None
    for anything else (a bug keeps its traceback)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    from .store.outage import unavailable

    url = Settings.load(
        {"home": getattr(args, "home", None), "database_url": getattr(args, "database_url", None)}
    ).effective_database_url
    problem = unavailable(exc, url)
    return told(problem) if problem is not None else None


# Commands that start by importing much of the package: the start makes objects that live as long
# as the process (the code of some 850 modules, the app, the routes), and collections while they are
# made walk them over and over (a tenth of a server's start CPU). Servers and workers turn the
# collector on again once they run (process.settle); the zygote as it starts (zygote_process).
_START_PAUSED = frozenset({"run", "demo", "worker", "users", "tokens", "db"})


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command in _START_PAUSED:
        gc.disable()
    if args.command in ("run", "demo"):
        return _serve(args)
    if args.command == "submit":
        return _submit(args)
    if args.command == "jobs":
        return _jobs(args)
    if args.command in ("users", "tokens"):
        from . import cli_accounts

        return cli_accounts.users(args) if args.command == "users" else cli_accounts.tokens(args)
    if args.command == "sources":
        return _sources(args)
    if args.command == "worker":
        return _worker(args)
    if args.command == "db":
        settings = Settings.load({"home": args.home, "database_url": args.database_url})
        from .store.check import check_database, shown_url
        from .store.database import make_folder
        from .store.sql import SqlJobStore

        make_folder(settings.home_path)
        check_database(settings.effective_database_url, settings.database_busy_timeout)
        store = SqlJobStore(settings.effective_database_url)
        store.migrate()
        store.close()
        print(_("database at %(url)s is up to date", url=shown_url(settings.effective_database_url)))
        return 0
    return EXIT_USAGE


def check_port(host: str, port: int) -> None:
    """Bind the address once before anything is printed: a port held by another process is one line
    here, not a login link pointing at that process followed by uvicorn's Errno 98."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(_("cannot serve on %(host)s: %(reason)s", host=host, reason=exc.strerror)) from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a TIME_WAIT port is free
        try:
            sock.bind(address)
        except OSError as exc:
            address_text = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    _(
                        "port %(port)s on %(host)s is already in use (another server?): stop it, or "
                        "pick another port with --port",
                        port=port,
                        host=host,
                    )
                ) from None
            raise ConfigError(
                _("cannot serve on %(host)s: %(reason)s", host=address_text, reason=exc.strerror)
            ) from None


def _serve(args: argparse.Namespace) -> int:
    from .executors.zygote_process import fork_early, open_files
    from .loader import load_app

    inherited = open_files()  # what the shell or a supervisor passed us, before the app opens anything
    if args.command == "demo":
        from .demo import app

        ref = "mieruka.demo:app"
    else:
        ref = args.app
        app = load_app(ref)
        target, colon, attr = ref.partition(":")
        if target.endswith(".py"):
            # Absolute: the zygote forked from here and the steps of pipelines import it from elsewhere.
            ref = f"{Path(target).resolve()}{colon}{attr}"
    app.ref = ref if ":" in ref or ref.endswith(".py") else None
    app.configure(
        host=args.host,
        port=args.port,
        workers=args.workers,
        home=args.home,
        database_url=args.database_url,
        root_path=args.root_path,
        timezone=args.timezone,
    )
    settings = app.settings
    check_port(settings.host, settings.port)
    # Before anything below opens the database, and before the store and the web layer are imported:
    # they are the server's alone, and pages the server keeps writing to are better not shared.
    # A check below that fails ends the server; the zygote ends with it.
    _on_its_own(fork_early, app, inherited)
    runtime = app.runtime
    from .store.check import check_database
    from .store.database import make_folder
    from .wiring import check_runtime

    check_runtime(runtime)  # one line now, rather than a traceback from inside the server
    make_folder(settings.home_path)
    check_database(settings.effective_database_url, settings.database_busy_timeout)
    from .cli_accounts import demo_login_link
    from .server import refuse_open_network

    link = demo_login_link(runtime) if args.command == "demo" else None  # makes the demo admin once
    refuse_open_network(runtime)
    from .wiring import start_runtime

    # migrations, recovery, workers: what fails there is one line, before "serving" (start_runtime
    # starts them in a context of their own, and says what fails in this one's language)
    start_runtime(runtime)
    base = f"http://{settings.host}:{settings.port}{settings.root_path}"
    tasks = ngettext("%(num)d task", "%(num)d tasks", len(app.tasks))
    title = repr(localized(app.title))
    print(
        "mieruka: "
        + _(
            "serving %(title)s (%(tasks)s) at %(url)s/  —  API docs at %(url)s/docs", title=title, tasks=tasks, url=base
        ),
        flush=True,
    )
    print(f"mieruka: {where_data_lives(settings, args.home)}", flush=True)
    if link:
        print("mieruka: " + _("log in as the demo admin with this one-time link: %(link)s", link=link), flush=True)
        print(
            "mieruka: "
            + _(
                "for `mieruka submit` and `mieruka jobs`, make an API token with `mieruka tokens create "
                "--user demo` (in this folder, or with the same home) and set MIERUKA_TOKEN to it"
            ),
            flush=True,
        )
    if len(app.dashboards) or app.streams:
        dashboards = ngettext("%(num)d dashboard", "%(num)d dashboards", len(app.dashboards))
        streams = ngettext("%(num)d stream", "%(num)d streams", len(app.streams))
        print(
            "mieruka: "
            + _(
                "%(dashboards)s and %(streams)s at %(url)s/dashboards", dashboards=dashboards, streams=streams, url=base
            ),
            flush=True,
        )
    _on_its_own(app.serve)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from . import worker_mode
    from .executors.celery_worker import create_worker
    from .loader import load_app
    from .process import settle

    worker_mode.IN_WORKER = True  # a script that calls app.serve() at module level must not serve here
    app = load_app(args.app)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues:
        raise ConfigError(_("%(option)s needs at least one queue name", option="--queues"))
    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigError(_("%(option)s must be at least 1", option="--concurrency"))
    app.configure(executor="celery", home=args.home, database_url=args.database_url, broker_url=args.broker_url)
    settings = app.settings
    from .store.check import check_database, shown_url
    from .store.database import make_folder
    from .wiring import check_settings

    check_settings(settings)
    make_folder(settings.home_path)
    check_database(settings.effective_database_url, settings.database_busy_timeout)
    if settings.auto_migrate:
        from .store.sql import SqlJobStore

        store = SqlJobStore(settings.effective_database_url)
        store.migrate()
        store.close()
    concurrency = args.concurrency or settings.effective_workers
    if not args.no_supervisor:
        from .executors.celery_supervisor import supervise

        settle()
        return supervise(
            [
                sys.executable,
                "-m",
                "mieruka.cli",
                "worker",
                args.app,
                "--queues",
                ",".join(queues),
                "--concurrency",
                str(concurrency),
                "--loglevel",
                args.loglevel,
                "--no-supervisor",
                *(["--home", args.home] if args.home else []),
                *(["--database-url", args.database_url] if args.database_url else []),
                *(["--broker-url", args.broker_url] if args.broker_url else []),
            ]
        )
    worker = create_worker(app.runtime, queues, concurrency, args.loglevel.upper())
    print(
        "mieruka: "
        + _(
            "Celery worker for %(title)s (%(tasks)s) on queues %(queues)s, %(concurrency)s at a time, "
            "broker %(broker)s",
            title=repr(localized(app.title)),
            tasks=ngettext("%(num)d task", "%(num)d tasks", len(app.tasks)),
            queues=", ".join(queues),
            concurrency=concurrency,
            broker=shown_url(settings.broker_url),
        ),
        flush=True,
    )
    print(f"mieruka: {where_data_lives(settings, args.home)}", flush=True)
    settle()
    _on_its_own(worker.start)
    return int(worker.exitcode or 0)


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    settings = Settings.load()
    return Client(args.url or settings.url, token=getattr(args, "token", None) or settings.token)


def _parse_params(pairs: list[str], text_fields: frozenset[str] = frozenset()) -> dict[str, Any]:
    """KEY=VALUE pairs; a value is read as JSON when it parses (3, true, [1, 2]), except for
    parameters that take text, which keep it as typed (name=42 stays "42")."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MierukaError(_("parameter %(pair)s is not KEY=VALUE", pair=repr(pair)))
        if key in text_fields:
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _text_fields(schema: dict[str, Any]) -> frozenset[str]:
    """Parameters whose schema is a string (or a string or null)."""
    names = set()
    for name, prop in schema.get("properties", {}).items():
        kinds = [prop, *prop.get("anyOf", [])]
        types = {k.get("type") for k in kinds} - {None, "null"}
        if types == {"string"} and not prop.get("format"):
            names.add(name)
    return frozenset(names)


def _submit(args: argparse.Namespace) -> int:
    _parse_params(args.params)  # reject malformed pairs before anything else
    files: dict[str, list[Path]] = {}
    for item in args.file:
        field, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise MierukaError(_("--file %(item)s: give FIELD=PATH of an existing file", item=repr(item)))
        files.setdefault(field, []).append(Path(path))
    with _client(args) as client:
        params = _parse_params(args.params, _text_fields(client.task(args.task)["params_schema"]))
        job = client.submit(args.task, params, files)
        if not args.wait:
            print(json.dumps({"id": job["id"], "status": job["status"], "url": job["url"]}))
            return 0
        deadline = time.monotonic() + args.timeout
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            job = client.job(job["id"], wait=min(30.0, max(deadline - time.monotonic(), 0.1)))
    print(json.dumps({k: job[k] for k in ("id", "status", "result", "error")}, ensure_ascii=False))
    if job["status"] == "succeeded":
        return 0
    if job["status"] in ("queued", "running"):
        seconds = f"{args.timeout:g}"
        still = _(
            "job %(id)s is still %(status)s after %(seconds)ss",
            id=job["id"],
            status=job["status"],
            seconds=seconds,
        )
        print(f"mieruka: {still}", file=sys.stderr)
    return EXIT_ERROR


def _jobs(args: argparse.Namespace) -> int:
    zone = ZoneInfo(Settings.load().timezone)
    with _client(args) as client:
        action = args.jobs_command
        if action == "ls":
            page = client.jobs(task=args.task, status=args.status, limit=args.limit)
            print(f"{'ID':>6}  {'TASK':<20} {'STATUS':<10} {'PROGRESS':>8}  {'CREATED':<19}  MESSAGE")
            for job in page["jobs"]:
                progress = "" if job["progress"] is None else f"{job['progress'] * 100:.0f}%"
                print(
                    f"{job['id']:>6}  {job['task'][:20]:<20} {job['status']:<10} {progress:>8}  "
                    f"{_local(job['created_at'], zone):<19}  {(job['error'] or job['message'] or '')[:60]}"
                )
            return 0
        if action == "show":
            print(json.dumps(client.job(args.id), indent=2, ensure_ascii=False))
            return 0
        if action == "logs":
            return _logs(client, args.id, args.follow, args.step)
        if action == "steps":
            print(f"{'STEP':<24} {'KIND':<9} {'STATUS':<10} {'PROGRESS':>8} {'DURATION':>9}  MESSAGE")
            for step in client.steps(args.id):
                progress = "" if step["progress"] is None else f"{step['progress'] * 100:.0f}%"
                duration = "" if step["duration"] is None else f"{step['duration']:.1f}s"
                name = ("  " if step["parent"] else "") + step["name"]
                note = step["error"] or step["message"] or ("reused" if step["reused"] else "")
                print(
                    f"{name[:24]:<24} {step['kind']:<9} {step['status']:<10} {progress:>8} {duration:>9}  {note[:60]}"
                )
            return 0
        if action == "cancel":
            job = client.cancel(args.id)
        elif action == "retry":
            job = client.retry(args.id)
        else:
            client.delete(args.id)
            print(_("deleted job %(id)s", id=args.id))
            return 0
        print(json.dumps({"id": job["id"], "status": job["status"]}))
        return 0


def _sources(args: argparse.Namespace) -> int:
    zone = ZoneInfo(Settings.load().timezone)
    with _client(args) as client:
        if args.sources_command == "ls":
            print(f"{'SOURCE':<24} {'SCHEDULE':<16} {'LAST REFRESH':<19}  {'ROWS':>9}  ERROR")
            for s in client.sources():
                print(
                    f"{s['name'][:24]:<24} {s['schedule'][:16]:<16} {_local(s['refreshed_at'], zone) or 'never':<19}"
                    f"  {s['rows']:>9}  {(s['error'] or '')[:60]}"
                )
            return 0
        state = client.refresh_source(args.name, wait=args.wait)
        print(
            json.dumps(
                {k: state[k] for k in ("name", "refreshed_at", "duration", "rows", "truncated", "error", "running")},
                ensure_ascii=False,
            )
        )
        return EXIT_ERROR if state["error"] else 0


def _logs(client: Any, job_id: int, follow: bool, step: str | None = None) -> int:
    after = 0
    while True:
        page = client.logs(job_id, after=after, limit=5000, step=step)
        for line in page["lines"]:
            stream = sys.stderr if line["stream"] == "stderr" else sys.stdout
            # A pipeline step's line says which step wrote it (parallel steps interleave).
            prefix = f"[{line['step']}] " if line.get("step") and step is None else ""
            print(prefix + line["text"], file=stream, flush=True)
        after = page["next_after"]
        if page["lines"]:
            continue
        if not follow or page["finished"]:
            return 0
        time.sleep(0.5)


def _local(stamp: str | None, zone: ZoneInfo) -> str:
    if not stamp:
        return ""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
