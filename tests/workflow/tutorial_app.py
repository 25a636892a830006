"""An app over the tutorial-style workflow in tutorial/, with relative paths only: the tests run it
from another folder (and each Python step imports it again from the step's own folder)."""

from __future__ import annotations

from pathlib import Path

import mieruka

app = mieruka.App("Tutorial workflow")

app.snakemake("tutorial/Snakefile", name="tutorial", cores=2)
# The same workflow reading another folder, which holds no config.yaml: Snakemake's own message.
app.snakemake("tutorial/Snakefile", name="tutorial_elsewhere", workdir="tutorial/data")
# ... and one whose config.yaml lacks a key the Snakefile reads.
app.snakemake("tutorial/Snakefile", name="tutorial_no_samples", workdir="no_samples")


def count_calls(folder: Path) -> dict[str, int]:
    """Reads what the workflow wrote in its (per-job) folder."""
    return {p.stem: int(p.read_text()) for p in sorted((folder / "calls").glob("*.count"))}


@app.pipeline
def tutorial_then_python(*, pipe: mieruka.Pipeline) -> object:
    """The workflow, then a Python step over its outputs."""
    flow = pipe.snakemake("tutorial/Snakefile", cores=2, name="workflow")
    return pipe.step(count_calls, flow.dir, name="calls")
