"""The training notebook runs top to bottom (nbclient) on a small trained world, and ships without outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nextbest.settings import REPO_ROOT, Settings
from tests.evaluation_fixtures import trained_world  # noqa: F401  (fixture)

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
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"NEXTBEST_HOME": str(trained_world.home), "NB_TRIALS": "1", "NB_MAX_ROUNDS": "60", "NB_DECISIONS": "200"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of the process that starts it
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for o in outputs)
    assert "oracle (knows the truth)" in text
    assert "MLflow run:" in text
