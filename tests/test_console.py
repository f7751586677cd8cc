"""Third-party warnings stay out of the user's output, in spawned worker processes too."""

from __future__ import annotations

import multiprocessing as mp
import os
import warnings

import pytest

from nextbest.console import QUIET_ENV, quiet_if_parent_was, quiet_third_parties


def _child_warns(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    # What a library does at import: its own warnings shown always, whatever PYTHONWARNINGS says.
    warnings.simplefilter("always", DeprecationWarning)
    quiet_if_parent_was()
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    queue.put(len(caught))


def _caught_in_spawned_child() -> int:
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_warns, args=(queue,))
    child.start()
    child.join(60)
    return int(queue.get(timeout=5))


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # set, then unset: monkeypatch restores each to what it was before the test (unset included), so what
    # `quiet_third_parties` sets does not leak into other tests
    for name in (QUIET_ENV, "PYTHONWARNINGS", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_a_worker_spawned_after_quieting_is_quiet_and_one_spawned_before_is_not(clean_environ: None) -> None:
    assert _caught_in_spawned_child() == 1  # nothing quieted: the library's warning shows
    with warnings.catch_warnings():
        quiet_third_parties()
    assert os.environ[QUIET_ENV] == "1"
    assert _caught_in_spawned_child() == 0
