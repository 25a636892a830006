"""The outcome spool's server side: an attempt's end is found until the store has it, then gone."""

from __future__ import annotations

from pathlib import Path

from mieruka.executors import spool


def test_an_outcome_is_found_until_saved_then_removed_once(tmp_path: Path) -> None:
    outcomes = spool.OutcomeSpool(tmp_path / "outcomes")
    outcomes.open()
    spool.write(outcomes.folder, 7, 1, ["the end"])
    spool.write(outcomes.folder, 8, 1, ["another"])
    found = outcomes.find(7, 1)
    assert found is not None and (found.job_id, found.attempt, found.changes) == (7, 1, ["the end"])
    saved = outcomes.saved(7, 1)
    saved()
    assert outcomes.find(7, 1) is None
    saved()  # told twice (a retried batch): nothing left to remove, no error
    other = outcomes.find(8, 1)
    assert other is not None and other.changes == ["another"]
    outcomes.close()
    assert outcomes.folder.is_dir(), "a folder holding an outcome still to save is kept for the next start"
    outcomes.saved(8, 1)()
    reopened = spool.OutcomeSpool(tmp_path / "outcomes")
    assert reopened.leftovers(patience=0) == []
    assert not any((tmp_path / "outcomes").iterdir()), "a dead run's empty folder is removed"
