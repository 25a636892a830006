"""Paths an app declares are the app file's, wherever the app is imported from (the server's
folder, a worker's, a pipeline step's own folder): Snakefiles, workflow folders, source files and
relative SQLite URLs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mieruka.errors import ConfigError
from mieruka.loader import load_app

APP = """
import mieruka

app = mieruka.App("paths")
app.snakemake("flow/Snakefile", name="flow", workdir="flow/data")
plan = app.source("plan", file="plan.csv")
ward = app.source("ward", url="sqlite:///ward.db", sql="SELECT 1 AS x")
memory = app.source("memory", url="sqlite:///:memory:", sql="SELECT 1 AS x")
absolute = app.source("absolute", url="sqlite:////srv/beds.db", sql="SELECT 1 AS x")
"""


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("snakemake", reason="needs the snakemake extra")
    folder = tmp_path / "the app"
    (folder / "flow" / "data").mkdir(parents=True)
    (folder / "flow" / "Snakefile").write_text("rule all:\n    output: 'x'\n    shell: 'touch x'\n")
    (folder / "plan.csv").write_text("a\n1\n")
    (folder / "app.py").write_text(textwrap.dedent(APP))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # as a step's process, whose folder is its own
    return folder


def test_relative_paths_resolve_against_the_app_file(app_dir: Path) -> None:
    app = load_app(str(app_dir / "app.py"))
    assert app.folder == app_dir.resolve()
    assert app.path("flow/Snakefile") == app_dir.resolve() / "flow" / "Snakefile"
    assert app.path("/etc/hosts") == Path("/etc/hosts")
    assert app.sources.get("plan").adapter.path == app_dir.resolve() / "plan.csv"
    assert app.sources.get("ward").adapter.url == f"sqlite:///{app_dir.resolve() / 'ward.db'}"
    assert app.sources.get("memory").adapter.url == "sqlite:///:memory:"
    assert app.sources.get("absolute").adapter.url == "sqlite:////srv/beds.db"
    # The workflow task's pipeline, declared again from here, points at the app's files.
    from mieruka.pipeline.graph import Pipeline
    from mieruka.pipeline.task import PipelineTask

    pipeline_task = getattr(app.tasks.get("flow").func, "mieruka_pipeline", None)
    assert isinstance(pipeline_task, PipelineTask)
    pipe = Pipeline(None, app.folder)
    pipeline_task.builder(pipe=pipe)
    spec = pipe.steps["snakemake"].snakemake
    assert spec["snakefile"] == str(app_dir.resolve() / "flow" / "Snakefile")
    assert spec["workdir"] == str(app_dir.resolve() / "flow" / "data")


def test_a_missing_snakefile_names_the_path_the_app_meant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app.py").write_text('import mieruka\napp = mieruka.App("x")\napp.snakemake("nowhere/Snakefile")\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=str(folder.resolve() / "nowhere" / "Snakefile")):
        load_app(str(folder / "app.py"))
