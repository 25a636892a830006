"""Whether this process is a worker that imported the app only to find its tasks. There a script's
module-level `app.serve()` or `app.start()` must do nothing: it would start another server, and
more workers. Set by what starts a worker (executors/fresh.py, the zygote, `mieruka worker`)."""

IN_WORKER = False
