"""The footprint bench (bench/footprint.py) in its quickest mode, on two of mieruka's systems (one with
worker processes, one in a single process): it still measures every figure and prints one table of
the right shape (its numbers are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ["mieruka-minimal", "mieruka-device-panel-threads"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_footprint_prints_one_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "bench/footprint.py", "--quick", "--only", ",".join(SYSTEMS), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:2] == ["system", "idle PSS tree MB"]
    assert "start->1st job result s" in header
    assert set(rows[1].strip("|").split("|")) == {"---"}
    body = {cells[0]: cells for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows[2:])}
    assert list(body) == SYSTEMS, done.stdout
    for name, cells in body.items():
        assert len(cells) == len(header), name
        figures = dict(zip(header, cells))
        assert float(figures["idle PSS tree MB"]) > 0, name
        assert float(figures["start->1st 200 s"]) > 0, name
        assert float(figures["start->1st job result s"]) >= float(figures["start->1st 200 s"]), name
    assert list(tmp_path.glob("run-*/footprint.json")), "the raw figures are kept"
