"""The example from the README: a plain typed function becomes a durable background job with an API.

Run it:  mieruka run examples/lab_tools/app.py   then open http://127.0.0.1:8000/docs
"""

from __future__ import annotations

import time
from typing import Literal

import mieruka

app = mieruka.App("Lab tools")


@app.task(timeout="10m", retries=2)
def align(
    reads: mieruka.File, reference: Literal["hg38", "mm10"] = "hg38", min_quality: int = 20, *, job: mieruka.Job
) -> dict[str, float]:
    """Align reads to a reference genome.

    Args:
        reads: A FASTA file of reads.
        reference: The genome to align to.
        min_quality: Reads below this quality are dropped.
    """
    job.progress(0.1, "indexing")
    sequences = [line for line in reads.read_text().splitlines() if line and not line.startswith(">")]
    print(f"indexed {reference}; {len(sequences)} reads")  # stdout goes to the job log
    time.sleep(0.2)
    job.progress(0.9, "writing the report")
    html = f"<h1>{len(sequences)} reads aligned to {reference}</h1>"
    job.artifact("report.html", html)  # a downloadable file
    return {"mapped": 0.97, "reads": len(sequences), "min_quality": min_quality}
