"""mieruka vs peer job queues, in one run, printed as one markdown table.

usage (from the repo root):  python bench/run.py [--reps N] [--all] [--only a,b,...] [--no-peers]

Runs BENCH_REPS rounds (default 3); each round runs every system once, in turn (interleaved,
so that a noisy moment of the shared machine hits every system alike), and the table shows the
median [min-max] over rounds. The peers are the scripts of the shared peers harness
($MIERUKA_PEERS_DIR, default ../shared/peers beside the repo), run unchanged in their own venv
($VENV, default /tmp/mieruka-peers-venv) against a private redis-server on 127.0.0.1:6390
(BENCH_REDIS_PORT; another free port if that one is taken). mieruka runs through bench/harness.py
with the repo's venv. Raw results: $BENCH_OUT (default /tmp/mieruka-bench)/results.json.
Standard library only: any python3 can run this file.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.abspath(os.environ.get("BENCH_OUT", "/tmp/mieruka-bench"))
PEERS_DIR = os.path.abspath(os.environ.get("MIERUKA_PEERS_DIR", os.path.join(ROOT, "..", "shared", "peers")))
VENV = os.environ.get("VENV", "/tmp/mieruka-peers-venv")
PEER_PACKAGES = ["celery[redis]", "rq", "huey", "dramatiq[redis]", "redis", "psutil"]  # as run_all.sh
PEER_MODULES = ["celery", "rq", "huey", "dramatiq", "redis", "psutil"]


def mieruka_python():
    if os.environ.get("MIERUKA_PYTHON"):
        return os.environ["MIERUKA_PYTHON"]
    venv_py = os.path.join(ROOT, ".venv", "bin", "python")
    return venv_py if os.path.exists(venv_py) else sys.executable


# key -> (kind, how). kind "mieruka": bench/harness.py <how>; kind "peer": (script, args, env).
SYSTEMS = {
    "mieruka-embedded": ("mieruka", ["embedded"], "mieruka embedded (Python API, in-process engine) w=2"),
    "mieruka-http": ("mieruka", ["http"], "mieruka HTTP (server process, 1 keep-alive client) w=2"),
    "mieruka-http-c4": ("mieruka", ["http", "4"], "mieruka HTTP (server process, 4 client threads) w=2"),
    "mieruka-http-run": (
        "mieruka",
        ["http", "run"],
        "mieruka HTTP run-now (POST /run: submit and result in one request) w=2",
    ),
    "mieruka-celery": (
        "mieruka",
        ["celery"],
        "mieruka on Celery (executor celery, PostgreSQL store, Redis broker) c=2",
    ),
    "mieruka-celery-async": ("mieruka", ["celery"], "mieruka on Celery, PostgreSQL synchronous_commit=off c=2"),
    "celery": ("peer", ("bench_celery.py", [], {}), None),
    "huey-sqlite": ("peer", ("bench_huey.py", [], {"HUEY_BACKEND": "sqlite"}), None),
    "huey-sqlite-tuned": ("peer", ("bench_huey.py", [], {"HUEY_BACKEND": "sqlite", "HUEY_TUNED": "1"}), None),
    "huey-redis": ("peer", ("bench_huey.py", [], {"HUEY_BACKEND": "redis"}), None),
    "huey-redis-tuned": ("peer", ("bench_huey.py", [], {"HUEY_BACKEND": "redis", "HUEY_TUNED": "1"}), None),
    "rq-simple": ("peer", ("bench_rq.py", ["2", "simple"], {}), None),
    "rq": ("peer", ("bench_rq.py", ["2"], {}), None),
    "dramatiq": ("peer", ("bench_dramatiq.py", [], {}), None),
}
DEFAULT = [
    "mieruka-embedded",
    "mieruka-http",
    "mieruka-http-run",
    "mieruka-celery",
    "celery",
    "huey-sqlite-tuned",
    "huey-sqlite",
    "huey-redis-tuned",
    "huey-redis",
]
OPTIONAL = ["mieruka-celery-async", "mieruka-http-c4", "rq-simple", "rq", "dramatiq"]
NEEDS_REDIS = {
    "mieruka-celery",
    "mieruka-celery-async",
    "celery",
    "huey-redis",
    "huey-redis-tuned",
    "rq-simple",
    "rq",
    "dramatiq",
}

COLS = [
    ("e2e_per_s", "e2e jobs/s", 0),
    ("enqueue_per_s", "enqueue/s", 0),
    ("p50_ms", "p50 ms", 1),
    ("p95_ms", "p95 ms", 1),
    ("p99_ms", "p99 ms", 1),
    ("rss_main_mb", "idle RSS worker MB", 1),
    ("rss_tree_mb", "idle RSS tree MB", 1),
    ("pss_tree_mb", "idle PSS tree MB", 1),
    ("ready_s", "start->1st result s", 2),
]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# -- peers: venv and redis -----------------------------------------------------------------------
def ensure_peer_venv():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        log(f"creating the peers' venv {VENV}")
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", VENV], check=True)
    check = run([py, "-c", "import " + ", ".join(PEER_MODULES)])
    if check.returncode != 0:
        log("installing " + " ".join(PEER_PACKAGES) + " into it")
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", *PEER_PACKAGES], check=True)
    return py


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start_redis():
    """A private, non-persistent redis-server; returns (Popen, port). The peers FLUSHALL it."""
    if not shutil.which("redis-server"):
        if os.geteuid() == 0 and shutil.which("apt-get"):
            log("installing redis-server (apt-get)")
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
        else:
            raise RuntimeError("redis-server is not installed")
    port = int(os.environ.get("BENCH_REDIS_PORT", "6390"))
    if not port_free(port):  # never flush somebody else's redis
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            new = s.getsockname()[1]
        log(f"port {port} is taken; the private redis uses {new}")
        port = new
    logf = open(os.path.join(OUT, "logs", "redis.log"), "w")  # noqa: SIM115 - redis writes to it
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=logf,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start (see {OUT}/logs/redis.log)")
        time.sleep(0.05)
    return proc, port


# -- running one system once ----------------------------------------------------------------------
def stop_worker(proc):
    """SIGTERM a worker, then SIGKILL it if it has not stopped within 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rounds_against_celery(script, reps, jobs, describe):
    """`reps` interleaved rounds of `script --one mieruka|celery ...` (mieruka with this python,
    Celery in the peers' venv) against one private Redis, for bench/drain.py and bench/cpu.py. Each
    child gets `--jobs N --redis-pid P` and prints its result as JSON on its last line; `describe`
    turns a result into the log line's text. Returns {system: [result per round]}."""
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    peer_py = ensure_peer_venv()
    redis_proc, redis_port = start_redis()
    results = {"mieruka on Celery": [], "celery": []}
    try:
        for r in range(reps):
            for name in results:
                one = ["--one", "mieruka"] if name != "celery" else ["--one", "celery", PEERS_DIR]
                cmd = [
                    sys.executable if name != "celery" else peer_py,
                    script,
                    *one,
                    "--jobs",
                    str(jobs),
                    "--redis-pid",
                    str(redis_proc.pid),
                ]
                out = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=ROOT,
                    env={**os.environ, "BENCH_REDIS_PORT": str(redis_port)},
                )
                if out.returncode != 0:
                    sys.exit(f"{name} failed: {out.stderr[-2000:]}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results[name].append(res)
                log(f"round {r + 1} {name}: {describe(res)}")
    finally:
        redis_proc.terminate()
    return results


def run_peer(key, peer_py, redis_port, round_no, timeout):
    script, args, extra_env = SYSTEMS[key][1]
    out = os.path.join(OUT, "peers")
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    results = os.path.join(out, "results.jsonl")
    if os.path.exists(results):
        os.remove(results)
    if script == "bench_huey.py":
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = os.path.join(out, "data", "huey.db" + suffix)
            if os.path.exists(p):
                os.remove(p)
    env = {
        **os.environ,
        **extra_env,
        "BENCH_OUT": out,
        "BENCH_REPS": "1",
        "BENCH_REDIS_PORT": str(redis_port or 6390),
        "PYTHONDONTWRITEBYTECODE": "1",
    }  # leave no __pycache__ in the shared peers folder
    env.pop("VIRTUAL_ENV", None)
    p = run_child([peer_py, script, *args], PEERS_DIR, env, timeout)
    with open(os.path.join(OUT, "logs", f"{key}.log"), "a") as f:
        f.write(f"### round {round_no}\n{p.stdout}{p.stderr}")
    if p.returncode != 0 or not os.path.exists(results):
        raise RuntimeError(f"exit {p.returncode}: {last_line(p.stderr)}")
    with open(results) as f:
        row = json.loads(f.readline())
    return row["name"], row["reps"][0]


def run_mieruka(key, round_no, timeout, redis_port=None):
    how = SYSTEMS[key][1]
    env = {
        **os.environ,
        "BENCH_OUT": OUT,
        "BENCH_REDIS_PORT": str(redis_port or 6390),
        "BENCH_PG_ASYNC_COMMIT": "1" if key.endswith("-async") else "0",
    }
    env.pop("PYTHONPATH", None)
    p = run_child([mieruka_python(), os.path.join(HERE, "harness.py"), *how], ROOT, env, timeout)
    with open(os.path.join(OUT, "logs", f"{key}.log"), "a") as f:
        f.write(f"### round {round_no}\n{p.stdout}{p.stderr}")
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {last_line(p.stderr)}")
    return SYSTEMS[key][2], json.loads(p.stdout.strip().splitlines()[-1])


def run_child(cmd, cwd, env, timeout):
    """Run one system in its own session; on timeout or interrupt kill that process group (by id),
    so that no worker of it outlives the run."""
    p = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def last_line(text):
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else "(no output)"


# -- report ----------------------------------------------------------------------------------------
def fmt(vals, nd):
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:,.{nd}f}"
    return f"{med:,.{nd}f} [{min(vals):,.{nd}f}-{max(vals):,.{nd}f}]"


def table(systems):
    lines = ["| system | " + " | ".join(c[1] for c in COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
    for s in systems:
        if not s["reps"]:
            err = (s["errors"][0] if s["errors"] else "not run").replace("|", "/")
            lines.append(f"| {s['name']} | FAILED: {err} |" + " |" * (len(COLS) - 1))
            continue
        cells = [fmt([r[k] for r in s["reps"]], nd) for k, _, nd in COLS]
        note = f" ({len(s['errors'])} failed rep)" if s["errors"] else ""
        lines.append(f"| {s['name']}{note} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(systems):
    ours = [s for s in systems if s["kind"] == "mieruka" and s["reps"]]
    peers = [s for s in systems if s["kind"] == "peer" and s["reps"]]
    if not ours or not peers:
        return ""
    short = {
        "mieruka-celery": "on Celery",
        "mieruka-celery-async": "on Celery async commit",
        "mieruka-embedded": "embedded",
        "mieruka-http": "HTTP",
        "mieruka-http-c4": "HTTP c4",
        "mieruka-http-run": "HTTP run",
    }
    head = ["peer"]
    for s in ours:
        head += [f"{short.get(s['key'], s['key'])} e2e x", f"{short.get(s['key'], s['key'])} p50 x"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for p in peers:
        cells = [p["name"]]
        for s in ours:
            cells.append(f"{s['median']['e2e_per_s'] / p['median']['e2e_per_s']:.2f}")
            cells.append(f"{s['median']['p50_ms'] / p['median']['p50_ms']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions(peer_py, redis_proc):
    info = {"machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "mem_gb": mem_gb(), "kernel": platform.release()}}
    mp = mieruka_python()
    code = "import mieruka, sys; print(mieruka.__version__, 'python', sys.version.split()[0])"
    info["mieruka"] = run([mp, "-c", code], cwd=ROOT).stdout.strip()
    info["mieruka_git"] = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--", "src"]).stdout.strip()
    if dirty:
        info["mieruka_git"] += "+uncommitted"
    if peer_py:
        freeze = run([os.path.join(VENV, "bin", "pip"), "freeze"]).stdout.splitlines()
        names = ("celery", "kombu", "huey", "redis", "rq", "dramatiq")
        info["peers"] = [ln for ln in freeze if ln.split("==")[0].lower() in names]
        code = "import sys; print(sys.version.split()[0])"
        info["peers_python"] = run([peer_py, "-c", code]).stdout.strip()
    if redis_proc:
        v = run(["redis-server", "--version"]).stdout.split()
        info["redis_server"] = next((w[2:] for w in v if w.startswith("v=")), " ".join(v))
    return info


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def mem_gb():
    try:
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


# -- main ------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--reps",
        type=int,
        default=int(os.environ.get("BENCH_REPS", "3")),
        help="rounds (default $BENCH_REPS or 3); the table shows medians",
    )
    ap.add_argument(
        "--all",
        action="store_true",
        help="also RQ (SimpleWorker, fork), Dramatiq, and mieruka HTTP with 4 client threads",
    )
    ap.add_argument(
        "--only",
        default=os.environ.get("BENCH_SYSTEMS", ""),
        help=f"comma list of systems (default: {','.join(DEFAULT)}; optional: {','.join(OPTIONAL)})",
    )
    ap.add_argument("--no-peers", action="store_true", help="mieruka only")
    ap.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("BENCH_RUN_TIMEOUT", "300")),
        help="seconds one system may take for one round (default 300)",
    )
    a = ap.parse_args()

    keys = [k.strip() for k in a.only.split(",") if k.strip()] or DEFAULT + (OPTIONAL if a.all else [])
    keys = sorted(dict.fromkeys(keys), key=lambda k: list(SYSTEMS).index(k) if k in SYSTEMS else -1)
    unknown = [k for k in keys if k not in SYSTEMS]
    if unknown:
        ap.error(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")
    if a.no_peers:
        keys = [k for k in keys if SYSTEMS[k][0] == "mieruka"]
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    for k in keys:
        p = os.path.join(OUT, "logs", f"{k}.log")
        if os.path.exists(p):
            os.remove(p)

    systems = [{"key": k, "kind": SYSTEMS[k][0], "name": SYSTEMS[k][2] or k, "reps": [], "errors": []} for k in keys]
    peer_py = redis_proc = redis_port = None
    if any(s["kind"] == "peer" for s in systems):
        try:
            if not os.path.exists(os.path.join(PEERS_DIR, "common.py")):
                raise RuntimeError(f"no peers harness at {PEERS_DIR} (set MIERUKA_PEERS_DIR)")
            peer_py = ensure_peer_venv()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            log(f"peers skipped: {exc}")
            for s in systems:
                if s["kind"] == "peer":
                    s["errors"].append(f"peers unavailable: {exc}")
    if any(s["key"] in NEEDS_REDIS and not s["errors"] for s in systems):
        try:
            redis_proc, redis_port = start_redis()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            log(f"redis unavailable, skipping redis-based systems: {exc}")
            for s in systems:
                if s["key"] in NEEDS_REDIS:
                    s["errors"].append(f"redis unavailable: {exc}")

    def stop_redis(*_):
        if redis_proc and redis_proc.poll() is None:
            redis_proc.terminate()
            try:
                redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                redis_proc.kill()

    atexit.register(stop_redis)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    runnable = [s for s in systems if not s["errors"] and (s["kind"] == "mieruka" or peer_py)]
    n = os.environ.get("BENCH_N", "2000"), os.environ.get("BENCH_LAT_N", "200")
    log(f"{a.reps} round(s) of {', '.join(s['key'] for s in runnable)}; N={n[0]}, latency N={n[1]}; logs in {OUT}/logs")
    t_start = time.monotonic()
    for rnd in range(1, a.reps + 1):
        for s in runnable:
            t = time.monotonic()
            try:
                if s["kind"] == "peer":
                    name, rep = run_peer(s["key"], peer_py, redis_port, rnd, a.timeout)
                else:
                    name, rep = run_mieruka(s["key"], rnd, a.timeout, redis_port)
                s["name"] = name
                s["reps"].append(rep)
                log(
                    f"round {rnd} {s['key']}: e2e {rep['e2e_per_s']:.0f}/s, "
                    f"enqueue {rep['enqueue_per_s']:.0f}/s, p50 {rep['p50_ms']:.1f} ms, "
                    f"p99 {rep['p99_ms']:.1f} ms, tree RSS {rep['rss_tree_mb']:.0f} MB "
                    f"({time.monotonic() - t:.0f} s)"
                )
            except subprocess.TimeoutExpired:
                s["errors"].append(f"round {rnd}: timed out after {a.timeout:g} s")
                log(f"round {rnd} {s['key']}: TIMED OUT after {a.timeout:g} s (see {OUT}/logs/{s['key']}.log)")
            except Exception as exc:
                s["errors"].append(f"round {rnd}: {exc}")
                log(f"round {rnd} {s['key']}: FAILED {exc} (see {OUT}/logs/{s['key']}.log)")
    elapsed = time.monotonic() - t_start

    for s in systems:
        s["median"] = {k: statistics.median(r[k] for r in s["reps"]) for k, _, _ in COLS} if s["reps"] else None
    meta = versions(peer_py, redis_proc)
    meta.update(
        reps=a.reps,
        n_throughput=int(n[0]),
        n_latency=int(n[1]),
        elapsed_s=round(elapsed),
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"meta": meta, "systems": systems}, f, indent=2)
    with open(os.path.join(OUT, "results.jsonl"), "w") as f:  # the peers' report.py reads this
        for s in systems:
            if s["reps"]:
                f.write(json.dumps({"name": s["name"], "reps": s["reps"], "median": s["median"]}) + "\n")

    med = f"median [min-max] of {a.reps} rounds" if a.reps > 1 else "1 round"
    print(f"\n## mieruka vs peers: no-op job, 2 workers, {n[0]} jobs e2e, {n[1]} sequential for latency ({med})\n")
    print(table(systems))
    r = ratios(systems)
    if r:
        print(
            "\nmieruka / peer, medians (e2e x > 1: mieruka has more throughput; "
            "p50 x < 1: mieruka has lower latency):\n"
        )
        print(r)
    m = meta["machine"]
    peers_v = ", ".join(meta.get("peers", [])) or "-"
    print(
        f"\nmieruka {meta['mieruka']} (git {meta['mieruka_git']}); peers: {peers_v}"
        f"{'; redis-server ' + meta['redis_server'] if meta.get('redis_server') else ''}; "
        f"machine: nproc={m['nproc']}, {m['cpu']}, {m['mem_gb']} GB RAM, Linux {m['kernel']}; "
        f"{meta['date']}; {elapsed / 60:.1f} min. Raw: {OUT}/results.json"
    )
    failed = [s for s in systems if s["errors"]]
    for s in failed:
        print(f"\n- {s['key']}: " + "; ".join(s["errors"][:3]))
    return 1 if any(not s["reps"] for s in systems) else 0


if __name__ == "__main__":
    sys.exit(main())
