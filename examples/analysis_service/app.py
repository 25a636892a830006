"""An analysis service (scenario 5): colleagues upload FASTA files, pick a configuration, submit a
BLAST search and watch each step live; the REST API is the same code path as the form.

    mieruka run examples/analysis_service/app.py      # needs Debian's ncbi-blast+ (blastn)

Two tasks do the same analysis: `blast_search` as Python and shell steps, and
`blast_search_snakemake` by running the Snakefile beside this file, unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from analysis import OUTFMT, PRESETS, BadFasta, check_fasta, render_report, summarise

import mieruka

HERE = Path(__file__).parent
app = mieruka.App("Analysis service", description="BLAST-like searches of uploaded sequences.")

Preset = Literal["fast", "sensitive"]


def validate(queries: list[mieruka.File], subjects: list[mieruka.File], *, job: mieruka.Job) -> dict[str, int]:
    """Check the uploads are nucleotide FASTA; write them cleaned into this step's folder."""
    job.progress(0.1, "checking queries")
    try:
        counts = {
            "queries": check_fasta([f.path for f in queries], Path("queries.fa")),
            "subjects": check_fasta([f.path for f in subjects], Path("subjects.fa")),
        }
    except BadFasta as exc:
        raise ValueError(f"invalid input: {exc}") from None
    print(f"{counts['queries']} queries, {counts['subjects']} subjects")
    return counts


def report(hits: Path, queries: Path, preset: str, *, job: mieruka.Job) -> dict[str, object]:
    """Summarise the hits and render the HTML report."""
    summary = summarise(hits, queries, preset)
    job.artifact("report.html", render_report(summary))
    return summary


@app.pipeline(parallel=2, timeout="10m")
def blast_search(
    queries: list[mieruka.File], subjects: list[mieruka.File], preset: Preset = "fast", *, pipe: mieruka.Pipeline
) -> object:
    """Search query sequences against subject sequences with blastn and report the best hits.

    Args:
        queries: Query sequences (nucleotide FASTA).
        subjects: Sequences to search in (nucleotide FASTA).
        preset: fast (megablast, near-identical matches) or sensitive (blastn, distant matches).
    """
    checked = pipe.step(validate, queries, subjects, name="validate")
    database = pipe.shell(
        ["makeblastdb", "-in", checked.file("subjects.fa"), "-dbtype", "nucl", "-out", "subjects"], name="makeblastdb"
    )
    hits = pipe.shell(
        "echo '::progress 0.2 searching'; blastn -query {query} -db {db} {options} "
        '-outfmt {outfmt} -out hits.tsv && echo "$(wc -l < hits.tsv) hits"',
        query=checked.file("queries.fa"),
        db=database.file("subjects"),
        options=PRESETS[preset],
        outfmt=OUTFMT,
        name="blastn",
    )
    return pipe.step(report, hits.file("hits.tsv"), checked.file("queries.fa"), preset, name="report")


def stage(queries: list[mieruka.File], subjects: list[mieruka.File]) -> None:
    """Put the uploads where the workflow expects its inputs."""
    for name, files in (("queries.fa", queries), ("subjects.fa", subjects)):
        with open(name, "wb") as out:
            for f in files:
                out.write(f.path.read_bytes().rstrip(b"\n") + b"\n")


def publish(folder: Path, *, job: mieruka.Job) -> dict[str, object]:
    import json

    job.artifact("report.html", folder / "report.html")
    summary: dict[str, object] = json.loads((folder / "report.json").read_text())
    return summary


@app.pipeline(timeout="10m")
def blast_search_snakemake(
    queries: list[mieruka.File],
    subjects: list[mieruka.File],
    preset: Preset = "fast",
    cores: int = 2,
    *,
    pipe: mieruka.Pipeline,
) -> object:
    """The same search, run by the Snakefile beside this app (each rule shows as a step).

    Args:
        queries: Query sequences (nucleotide FASTA).
        subjects: Sequences to search in (nucleotide FASTA).
        preset: fast (megablast) or sensitive (blastn).
        cores: Cores Snakemake may use.
    """
    inputs = pipe.step(stage, queries, subjects, name="stage")
    # The Snakefile beside this file (relative paths are the app's); it reads the staged files and
    # writes into a folder of its own (a mirror of the staging folder), which publish reads.
    flow = pipe.snakemake(
        "Snakefile", targets=["report.html"], config={"preset": preset}, cores=cores, workdir=inputs.dir
    )
    return pipe.step(publish, flow.dir, name="publish")


if __name__ == "__main__":
    if not shutil.which("blastn"):
        print("blastn is missing: apt-get install ncbi-blast+")
    app.serve()
