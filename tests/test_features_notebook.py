"""The customer-genome notebook runs top to bottom (nbclient) on a tiny world, and ships without outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nextbest.settings import REPO_ROOT, Settings
from tests.features_fixtures import write_sources
from tests.notebook_runner import FIGURE_KEY, run_notebook

NOTEBOOK = REPO_ROOT / "notebooks" / "01_customer_genome.ipynb"
BUILDER = REPO_ROOT / "notebooks" / "01_customer_genome_build.py"


def test_genome_notebook_is_committed_without_outputs_and_matches_its_builder() -> None:
    raw = json.loads(NOTEBOOK.read_text())
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    spec = importlib.util.spec_from_file_location("genome_nb_build", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = [(c.source, c.metadata.get(FIGURE_KEY)) for c in module.build().cells]
    stored = [
        ("".join(c["source"]) if isinstance(c["source"], list) else c["source"], c["metadata"].get(FIGURE_KEY))
        for c in raw["cells"]
    ]
    assert built == stored, "the .ipynb is stale: run `python notebooks/01_customer_genome_build.py`"
    assert sorted(name for _, name in built if name) == sorted(module.FIGURES)
    assert "Agg" not in "".join(source for source, _ in built)  # figures show inline, as in Jupyter


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_genome_notebook_builds_features_and_reads_a_customer_online(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    write_sources(settings.world_dir, customers=20, days=30, seed=11)
    env = {"NEXTBEST_HOME": str(settings.home), "NB_CUSTOMERS": "2", "PYTHONWARNINGS": "ignore"}
    run = run_notebook(NOTEBOOK, env)
    outputs, text = run.outputs, run.text
    assert not [o for o in outputs if o.get("output_type") == "error"]
    run.assert_figures(["signals_and_contacts", "features_over_time"])  # displayed, no empty panel, no overlap
    assert "world now:" in text
    assert "hours_since_airport_checkin" in text and "push @ airport" in text
    assert (settings.features_dir / "online_store.db").is_file()
