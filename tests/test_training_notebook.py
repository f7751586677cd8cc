"""The training notebook runs top to bottom (nbclient) on a small trained world, and ships without outputs.

It reads the registry, never writes it (training happens in the CLI, or with NB_TRAIN=1), reads every version's
aliases correctly, and shows its figures inline."""

from __future__ import annotations

import json

import pytest

from nextbest.settings import REPO_ROOT, Settings
from tests.evaluation_fixtures import trained_world  # noqa: F401  (fixture)
from tests.notebook_runner import FIGURE_KEY, run_notebook

NOTEBOOK = REPO_ROOT / "notebooks" / "02_train_and_compare.ipynb"


def _builder():  # noqa: ANN202
    import importlib.util

    spec = importlib.util.spec_from_file_location("nb_build", REPO_ROOT / "notebooks" / "02_train_and_compare_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_committed_without_outputs_and_matches_its_builder() -> None:
    raw = json.loads(NOTEBOOK.read_text())
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    module = _builder()
    built = [(c.source, c.metadata.get(FIGURE_KEY)) for c in module.build().cells]
    stored = [
        ("".join(c["source"]) if isinstance(c["source"], list) else c["source"], c["metadata"].get(FIGURE_KEY))
        for c in raw["cells"]
    ]
    assert built == stored, "the .ipynb is stale: run `python notebooks/02_train_and_compare_build.py`"
    assert sorted(name for _, name in built if name) == sorted(module.FIGURES)
    source = "\n".join(s for s, _ in built)
    assert "Agg" not in source
    # training only under the explicit flag, which defaults to off
    assert "TRAIN = os.environ.get('NB_TRAIN', '0') == '1'" in source
    train_cell = next(s for s, _ in built if "train_model(" in s)
    assert train_cell.startswith("if TRAIN:")


def _registry(settings: Settings) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    from nextbest.models.registry import mlflow_client

    # Bound to this home's tracking AND registry stores: a bare MlflowClient(tracking_uri=...) takes the registry
    # from the process-wide fluent URI, which the suite's earlier tests left pointing at their own homes.
    client = mlflow_client(settings)
    out = {}
    for name in ("churn", "nba"):
        versions = [client.get_model_version(name, v.version) for v in client.search_model_versions(f"name='{name}'")]
        out[name] = sorted((v.version, tuple(sorted(v.aliases))) for v in versions)
    return out


@pytest.mark.slow
def test_notebook_reads_the_registry_with_its_aliases_and_shows_its_figures(trained_world: Settings) -> None:  # noqa: F811
    before = _registry(trained_world)
    assert all(any("champion" in aliases for _, aliases in versions) for versions in before.values()), before
    env = {"NEXTBEST_HOME": str(trained_world.home), "NB_EVALUATE": "1", "NB_DECISIONS": "200"}
    run = run_notebook(NOTEBOOK, env)
    assert not [o for o in run.outputs if o.get("output_type") == "error"]
    run.assert_figures(["registered_versions", "tuning_trials", "evaluation_ladder"])
    assert _registry(trained_world) == before  # read, not written: no new version, no alias moved
    assert "reading the registry as the CLI left it" in run.text
    for name, versions in before.items():
        champion = next(v for v, aliases in versions if "champion" in aliases)
        assert f"{name} @champion: v{champion}" in run.text
    assert "aliases: []" not in run.text and "champion" in run.text
    assert "oracle (knows the truth)" in run.text
    assert "MLflow run:" in run.text
