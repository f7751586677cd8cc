"""Suite-wide isolation: no test reads a developer's nextbest.yaml or writes into the real state folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_state() -> Iterator[Path]:
    """Point NEXTBEST_HOME at a per-session temp folder and ignore any local nextbest.yaml.

    Tests that need their own home pass it explicitly (Settings(home=tmp_path)); this default only guards
    against a test silently using `.nextbest/` of the checkout.
    """
    saved = {k: os.environ.get(k) for k in ("NEXTBEST_HOME", "NEXTBEST_CONFIG", "MLFLOW_TRACKING_URI")}
    with tempfile.TemporaryDirectory(prefix="nextbest-test-") as home:
        os.environ["NEXTBEST_HOME"] = home
        empty = Path(home) / "empty-nextbest.yaml"  # an empty settings file: no developer's nextbest.yaml is read
        empty.write_text("")
        os.environ["NEXTBEST_CONFIG"] = str(empty)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.setdefault("MPLBACKEND", "Agg")
        yield Path(home)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def served_world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The simulated bank's tiny served world (tests/serving_fixtures.py), built once per session."""
    from serving_fixtures import build_served_world

    return build_served_world(tmp_path_factory.mktemp("served-world"))


@pytest.fixture(scope="session")
def berka(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Berka (configs/berka.yaml) onboarded once per session: features, Feast project, both models (2 trials)."""
    from environment import skip_unless_ci
    from project_fixtures import BERKA, berka_available, onboard_project

    if not berka_available():
        skip_unless_ci("Berka data not found (set NEXTBEST_BERKA_DIR to the folder of account.csv)")
    return onboard_project(BERKA, tmp_path_factory.mktemp("berka-project"))


@pytest.fixture(scope="session")
def flat_project(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The flat-table example (configs/examples/flat_contacts.yaml, string customer keys) onboarded once."""
    from project_fixtures import FLAT, onboard_project

    return onboard_project(FLAT, tmp_path_factory.mktemp("flat-project"))
