"""The per-job folder a workflow runs in: the workflow folder's files as links, its folders real."""

from __future__ import annotations

from pathlib import Path

import pytest

from mieruka.errors import ConfigError
from mieruka.pipeline import snakemake as snakemake_module
from mieruka.pipeline.snakemake import mirror


def test_a_mirror_reads_the_workflow_folder_and_writes_its_own(tmp_path: Path) -> None:
    source = tmp_path / "workflow"
    (source / "data" / "samples").mkdir(parents=True)
    (source / "data" / "samples" / "A.fastq").write_text("@r1\n")
    (source / "config.yaml").write_text("samples: [A]\n")
    (source / ".snakemake" / "locks").mkdir(parents=True)
    (source / ".mieruka").mkdir()
    (source / ".mieruka" / "mieruka.db").write_text("")
    shared = tmp_path / "reference"
    shared.mkdir()
    (shared / "genome.fa").write_text(">chr1\n")
    (source / "reference").symlink_to(shared)
    jobs = source / "jobs"  # the home's job folders, inside the workflow folder
    target = jobs / "1" / ".work" / "snakemake"
    target.mkdir(parents=True)
    (target / "config.yaml").write_text("from an earlier attempt\n")

    mirror(source, target, avoid=jobs)
    assert (target / "data").is_dir() and not (target / "data").is_symlink()
    assert (target / "data" / "samples" / "A.fastq").is_symlink()
    assert (target / "data" / "samples" / "A.fastq").read_text() == "@r1\n"
    assert (target / "reference").is_symlink() and (target / "reference" / "genome.fa").read_text() == ">chr1\n"
    assert (target / "config.yaml").read_text() == "from an earlier attempt\n"  # kept, not linked over
    assert not (target / ".snakemake").exists() and not (target / ".mieruka").exists()
    assert not (target / "jobs").exists()
    (target / "data" / "samples" / "B.txt").write_text("an output")
    assert not (source / "data" / "samples" / "B.txt").exists()  # outputs stay in the job's folder
    mirror(source, target, avoid=jobs)  # again (a retry): nothing changes, nothing fails
    assert (target / "data" / "samples" / "B.txt").read_text() == "an output"


def test_a_folder_too_large_to_mirror_is_refused_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "workflow"
    source.mkdir()
    for i in range(6):
        (source / f"f{i}").write_text("")
    monkeypatch.setattr(snakemake_module, "MAX_MIRRORED", 5)
    with pytest.raises(ConfigError, match="isolate=False"):
        mirror(source, tmp_path / "job")
