"""Declaring pipelines, without running them: names, dependencies, safe shell strings, the
progress line protocol, the step state table and the scheduling rule (all pure)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

import mieruka
from mieruka.core.steps import STEP_TRANSITIONS, StepStatus, ready_steps, topological_order
from mieruka.errors import ConfigError
from mieruka.pipeline import protocol
from mieruka.pipeline.graph import Pipeline
from mieruka.pipeline.resolve import render_shell, resolve


def noop(*args: object) -> None:
    return None


def test_dependencies_come_from_outputs_and_after() -> None:
    pipe = Pipeline()
    a = pipe.step(noop, name="a")
    b = pipe.shell(["cat", a.file("x.txt")], name="b")
    c = pipe.shell("wc -l {f}", f=b.file("y"), after=[a])
    d = pipe.step(noop, {"nested": [a["k"], c]})
    assert [pipe.steps[n].depends_on for n in ("a", "b", "wc", "noop")] == [[], ["a"], ["b", "a"], ["a", "wc"]]
    assert c.step == "wc" and d.step == "noop"
    assert pipe.step(noop).step == "noop-2"  # unique names


def test_declaration_mistakes_are_config_errors() -> None:
    pipe = Pipeline()
    with pytest.raises(ConfigError, match="not a step declared before"):
        pipe.step(noop, after=["later"])
    with pytest.raises(ConfigError, match="no x= was given"):
        pipe.shell("echo {x}")
    with pytest.raises(ConfigError, match="empty"):
        pipe.shell([])
    with pytest.raises(ConfigError, match="needs a function"):
        pipe.step("not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="relative path"):
        pipe.step(noop).file("../etc/passwd")
    with pytest.raises(ConfigError, match="no Snakefile"):
        pipe.snakemake("no/such/Snakefile")
    app = mieruka.App("t")
    with pytest.raises(ConfigError, match="no Snakefile"):
        app.snakemake("no/such/Snakefile")
    with pytest.raises(ConfigError, match="typed mieruka.Pipeline"):

        @app.pipeline
        def no_pipe(x: int = 1) -> None: ...


def test_fingerprint_follows_the_definition() -> None:
    def build(value: int) -> str:
        pipe = Pipeline()
        pipe.step(noop, value, name="s")
        return pipe.steps["s"].fingerprint

    assert build(1) == build(1) != build(2)


@pytest.mark.parametrize("value", ["a b", "x; touch pwned", "$(id)", "`id`", "it's", "-rf", "ü ñ", ""])
def test_shell_fields_are_quoted_so_the_shell_sees_the_value(value: str, tmp_path: Path) -> None:
    command = render_shell("printf '%s\\n' {v} {items}", {"v": value, "items": [value, "2"]}, {}, lambda n: tmp_path)
    out = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:3] == [value, value, "2"]
    assert not (tmp_path / "pwned").exists()


def test_shell_strings_keep_literal_braces_and_refuse_format_specs(tmp_path: Path) -> None:
    assert render_shell("echo {{a}} {v}", {"v": 1}, {}, lambda n: tmp_path) == "echo {a} 1"
    with pytest.raises(ConfigError, match="plain"):
        render_shell("echo {v:>9}", {"v": 1}, {}, lambda n: tmp_path)
    with pytest.raises(ConfigError, match="plain"):
        render_shell("echo {v!r}", {"v": 1}, {}, lambda n: tmp_path)


def test_resolve_outputs_items_files_and_folders(tmp_path: Path) -> None:
    pipe = Pipeline()
    a = pipe.step(noop, name="a")
    folder = {"a": tmp_path / "a"}.__getitem__
    assert resolve([a, a["k"][1], a.file("f.txt"), a.dir], {"a": {"k": [0, 7]}}, folder) == [
        {"k": [0, 7]},
        7,
        tmp_path / "a" / "f.txt",
        tmp_path / "a",
    ]
    with pytest.raises(ConfigError, match="no item 'zz'"):
        resolve(a["zz"], {"a": {}}, folder)
    command = render_shell("x {f}", {"f": a.file("my file")}, {}, folder)
    assert shlex.split(command) == ["x", str(tmp_path / "a" / "my file")]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("::progress 0.4 aligning", protocol.Progress(0.4, "aligning")),
        ("::progress 40% aligning reads", protocol.Progress(0.4, "aligning reads")),
        ("::progress 1.7", protocol.Progress(1.0, None)),
        ("::progress - indexing", protocol.Progress(None, "indexing")),
        ("::artifact out/r.html", protocol.ArtifactLine("out/r.html", "r.html")),
        ("::artifact out/r.html report.html", protocol.ArtifactLine("out/r.html", "report.html")),
        ("::progress abc", None),
        ("::progress", None),
        ("::progress nan x", None),
        ("::unknown 1", None),
        ("progress 0.4", None),
        (" ::progress 0.4", None),
    ],
)
def test_progress_line_protocol(line: str, expected: object) -> None:
    assert protocol.parse(line) == expected


def test_progress_lines_written_by_python_steps_parse_back() -> None:
    assert protocol.parse(protocol.progress_line(0.25, "half\nway")) == protocol.Progress(0.25, "half way")


def test_step_state_table() -> None:
    assert set(STEP_TRANSITIONS) == set(StepStatus)
    assert StepStatus.RUNNING in STEP_TRANSITIONS[StepStatus.PENDING]
    assert StepStatus.SUCCEEDED in STEP_TRANSITIONS[StepStatus.RUNNING]
    assert StepStatus.SUCCEEDED not in STEP_TRANSITIONS[StepStatus.PENDING]
    assert StepStatus.RUNNING not in STEP_TRANSITIONS[StepStatus.SKIPPED]
    assert all(StepStatus.PENDING in STEP_TRANSITIONS[s] for s in StepStatus if s.finished)


def test_ready_and_blocked_steps() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    P, R, S, F = StepStatus.PENDING, StepStatus.RUNNING, StepStatus.SUCCEEDED, StepStatus.FAILED
    assert ready_steps(deps, {"a": P, "b": P, "c": P, "d": P}) == (["a"], [])
    assert ready_steps(deps, {"a": S, "b": P, "c": P, "d": P}) == (["b", "c"], [])
    assert ready_steps(deps, {"a": S, "b": R, "c": S, "d": P}) == ([], [])
    assert ready_steps(deps, {"a": S, "b": F, "c": S, "d": P}) == ([], ["d"])


def test_topological_order_and_cycles() -> None:
    assert topological_order({"c": ["b"], "a": [], "b": ["a"]}) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="cycle"):
        topological_order({"a": ["b"], "b": ["a"]})
    with pytest.raises(ValueError, match="unknown step"):
        topological_order({"a": ["zz"]})


def test_the_documented_protocol_lines_parse() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "pipelines.md").read_text()
    lines = [line.split("  ")[0] for line in docs.splitlines() if line.startswith("::")]
    assert len(lines) >= 5
    assert all(protocol.parse(line) is not None for line in lines), lines


def test_snakemake_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from mieruka.errors import MissingExtraError
    from mieruka.pipeline import snakemake as snakemake_module

    snakefile = tmp_path / "Snakefile"
    snakefile.write_text("rule all:\n    output: 'x'\n    shell: 'touch x'\n")
    pipe = Pipeline()
    pipe.snakemake(snakefile)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        "mieruka.pipeline.snakemake.importlib.util.find_spec",
        lambda name, *a: None if name == "snakemake" else real(name, *a),
    )
    with pytest.raises(MissingExtraError, match=r"mieruka\[snakemake\]"):
        snakemake_module.snakemake_argv(pipe.steps["snakemake"], tmp_path, tmp_path, lambda v: v, tmp_path)
