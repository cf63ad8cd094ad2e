"""A store and a spool that cannot take rows, flushed again and again: one warning per fault, not one per flush.

The disk-full case runs on a real full file system (a 256 kB tmpfs, mounted when the test runs as
root, as CI does); the same logic is covered everywhere by a spool directory that cannot be made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import task_rows
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore

FLUSHES = 9


@contextlib.contextmanager
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs filled to the last byte."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root); test_a_spool_that_cannot_be_made covers the logic")
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this sandbox refuses mount ({done.stderr.decode().strip()}); the other test covers the logic")
    try:
        with contextlib.suppress(OSError), open(mount / "filler", "wb") as f:
            f.write(b"x" * (1 << 20))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def flush_repeatedly(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.set_level(logging.WARNING, logger="prefect.synthobs")
    for i in range(FLUSHES):
        recorder.add("task_runs", task_rows(3, start=10 * i))
        recorder.flush(background=True)  # a background flush retries the store whenever its backoff allows
        recorder.breaker._retry_at = 0.0  # as if the backoff had passed: every flush tries everything again
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_full_disk_costs_one_warning_for_the_store_and_one_for_the_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with full_disk(tmp_path) as disk:
        recorder = Recorder(lambda: HealthStore(str(disk / "store")), disk / "spool", store_timeout=5)
        warnings = flush_repeatedly(recorder, caplog)
        assert len(warnings) == 2, warnings
        assert "cannot write the health store" in warnings[0] and "No space left" in warnings[0]
        assert "cannot spool" in warnings[1] and "keeping them in memory" in warnings[1]
        # nothing lost: every row is still held, in memory
        assert sum(len(v) for v in recorder._pending.values()) == 3 * FLUSHES


def test_a_spool_that_cannot_be_made_warns_once_and_again_only_after_it_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store and the spool should be")
    recorder = Recorder(lambda: HealthStore(str(blocker / "store")), blocker / "spool", store_timeout=5)
    warnings = flush_repeatedly(recorder, caplog)
    assert len(warnings) == 2, warnings
    assert "cannot spool" in warnings[1]
    held = sum(len(v) for v in recorder._pending.values())
    assert held == 3 * FLUSHES

    # the disk frees up: everything reaches the store, the spool is said to work again
    blocker.unlink()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="prefect.synthobs")
    recorder.breaker._retry_at = 0.0
    recorder.flush(background=True)
    assert HealthStore(str(blocker / "store")).read("task_runs").shape[0] == held
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    # a second fault after the recovery is said again, once
    shutil.rmtree(blocker)
    blocker.write_text("blocked again")
    caplog.clear()
    recorder2_warnings = flush_repeatedly(recorder, caplog)
    assert sum("cannot spool" in w for w in recorder2_warnings) == 1, recorder2_warnings
