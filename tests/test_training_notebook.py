"""The training notebook runs top to bottom (nbclient) on a small trained world, and ships without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nextbest.settings import REPO_ROOT, Settings
from tests.evaluation_fixtures import trained_world  # noqa: F401  (fixture)
from tests.notebook_runner import execute_notebook

NOTEBOOK = REPO_ROOT / "notebooks" / "02_train_and_compare.ipynb"


def test_notebook_is_committed_without_outputs_and_matches_its_builder() -> None:
    import importlib.util

    raw = json.loads(NOTEBOOK.read_text())
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    spec = importlib.util.spec_from_file_location("nb_build", REPO_ROOT / "notebooks" / "02_train_and_compare_build.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    built = [c.source for c in module.build().cells]
    assert built == ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in raw["cells"]], (
        "the .ipynb is stale: run `python notebooks/02_train_and_compare_build.py`"
    )


@pytest.mark.slow
def test_notebook_trains_compares_runs_and_reads_the_ladder(trained_world: Settings, tmp_path: Path) -> None:  # noqa: F811
    env = {"NEXTBEST_HOME": str(trained_world.home), "NB_TRIALS": "1", "NB_MAX_ROUNDS": "60", "NB_DECISIONS": "200"}
    outputs, text = execute_notebook(NOTEBOOK, env)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert "oracle (knows the truth)" in text
    assert "MLflow run:" in text
