"""Pipelines: a job made of named steps (Python functions, shell commands, Snakemake workflows)
with dependencies, each step with its own state, log, progress and artifacts.

`graph` declares steps, `runner` runs them inside the job (worker side), `child` runs one Python
step in its own process, `snakemake` drives a Snakefile through a Snakemake logger plugin."""

from .graph import Output, Pipeline, Ref

__all__ = ["Output", "Pipeline", "Ref"]
