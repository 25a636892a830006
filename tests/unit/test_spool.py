"""The outcome spool (mieruka.executors.spool): a worker's end is found until the store has it, an
end cut short is none, and what a killed server left is found by the next one."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from mieruka.executors import spool


def opened(root: Path) -> spool.OutcomeSpool:
    outcomes = spool.OutcomeSpool(root)
    outcomes.open()
    return outcomes


def test_a_worker_writes_each_end_over_the_last_and_the_server_finds_the_attempt_it_asks_for(tmp_path: Path) -> None:
    outcomes = opened(tmp_path / "outcomes")
    slot = spool.Slot(outcomes.folder)
    assert slot.name == f"{os.getpid()}.outcome"
    slot.write(7, 1, ["a long end " * 100])
    slot.write(8, 2, ["short"])  # over the longer one: its length says where it ends
    assert outcomes.find(slot.name, 7, 1) is None
    found = outcomes.find(slot.name, 8, 2)
    assert found is not None and (found.job_id, found.attempt, found.changes) == (8, 2, ["short"])
    assert outcomes.find(slot.name, 8, 1) is None, "another attempt of the job is not this end"
    assert outcomes.find("nobody.outcome", 8, 2) is None


def test_a_large_end_is_not_kept_on_disk_once_a_smaller_one_follows(tmp_path: Path) -> None:
    outcomes = opened(tmp_path / "outcomes")
    slot = spool.Slot(outcomes.folder)
    slot.write(1, 1, ["x" * (3 * spool.SHRINK_OVER)])
    slot.write(2, 1, ["small"])
    assert (outcomes.folder / slot.name).stat().st_size < 1000
    found = outcomes.find(slot.name, 2, 1)
    assert found is not None and found.changes == ["small"]


def test_a_pid_used_again_gets_a_file_of_its_own(tmp_path: Path) -> None:
    outcomes = opened(tmp_path / "outcomes")
    first, second = spool.Slot(outcomes.folder), spool.Slot(outcomes.folder)
    first.write(1, 1, ["first"])
    second.write(2, 1, ["second"])
    assert first.name != second.name
    assert spool.slot_name(first.name) == first.name and spool.slot_name(second.name) == second.name
    assert outcomes.find(first.name, 1, 1) is not None and outcomes.find(second.name, 2, 1) is not None


def left_by_a_killed_server(root: Path) -> Path:
    """A run's folder whose server lock nobody holds."""
    folder = root / "0123456789ab"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("cut", ["payload", "header", "byte"])
def test_an_end_cut_short_is_none(tmp_path: Path, cut: str, caplog: pytest.LogCaptureFixture) -> None:
    folder = left_by_a_killed_server(tmp_path / "outcomes")
    slot = spool.Slot(folder)
    slot.write(7, 1, ["x" * 1000])
    path = folder / slot.name
    data = path.read_bytes()
    if cut == "payload":  # killed in the middle of the write: what follows is the end before
        path.write_bytes(data[:500] + b"\0" * (len(data) - 500))
    elif cut == "header":
        path.write_bytes(data[:10])
    else:
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert spool.OutcomeSpool(tmp_path / "outcomes").leftovers(patience=0) == []
    assert not path.exists(), "nothing to save: the file goes"
    if cut != "header":
        assert "cut short" in caplog.text


def test_a_clean_stop_removes_the_folder_only_when_every_end_is_saved(tmp_path: Path) -> None:
    root = tmp_path / "outcomes"
    outcomes = opened(root)
    done, waiting, idle = spool.Slot(outcomes.folder), spool.Slot(outcomes.folder), spool.Slot(outcomes.folder)
    done.write(1, 1, ["saved"])
    waiting.write(2, 1, ["not saved"])
    outcomes.saved(done.name, 1, 1)()
    outcomes.saved(waiting.name, 1, 1)()  # an earlier end of that worker's: not the one in its file
    outcomes.close()
    assert outcomes.folder.is_dir(), "an end still to save is kept for the next start"
    found = spool.OutcomeSpool(root).leftovers(patience=0)
    assert sorted((f.job_id, f.changes) for f in found) == [(1, ["saved"]), (2, ["not saved"])]  # saved twice: harmless
    assert idle.name not in [f.path.name for f in found]

    again = opened(root)
    slot = spool.Slot(again.folder)
    slot.write(3, 1, ["saved"])
    again.saved(slot.name, 3, 1)()
    again.close()
    assert not again.folder.exists()


def test_a_dead_workers_file_goes_once_its_end_is_saved(tmp_path: Path) -> None:
    outcomes = opened(tmp_path / "outcomes")
    saved_already, not_yet = spool.Slot(outcomes.folder), spool.Slot(outcomes.folder)
    saved_already.write(1, 1, ["end"])
    outcomes.saved(saved_already.name, 1, 1)()
    outcomes.retire(saved_already.name)
    assert not (outcomes.folder / saved_already.name).exists()

    not_yet.write(2, 1, ["end"])
    note = outcomes.saved(not_yet.name, 2, 1)  # reported, on its way to the store
    outcomes.retire(not_yet.name)
    assert (outcomes.folder / not_yet.name).exists(), "a server killed now still finds it"
    note()
    assert not (outcomes.folder / not_yet.name).exists()


def test_an_end_in_the_earlier_versions_file_is_found_after_an_upgrade(tmp_path: Path) -> None:
    root = tmp_path / "outcomes"
    folder = left_by_a_killed_server(root)
    (folder / "7-2.outcome").write_bytes(pickle.dumps(["the end"]))
    found = spool.OutcomeSpool(root).leftovers(patience=0)
    assert [(f.job_id, f.attempt, f.changes) for f in found] == [(7, 2, ["the end"])]


def test_only_a_slots_own_name_is_taken_from_a_worker() -> None:
    assert spool.slot_name("1234.outcome") == "1234.outcome"
    assert spool.slot_name("1234.2.outcome") == "1234.2.outcome"
    for said in ("../server.lock", "/etc/passwd", "1234.outcome/..", "x.outcome", "", None, 1234, "1234.outcome\n"):
        assert spool.slot_name(said) is None, said
