"""The MLOps monitoring notebook runs top to bottom (nbclient) on a state folder with monitoring runs, showing its
figures inline, and on one with none yet (right after `make demo`, where the demo's closing hint points)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nextbest.settings import REPO_ROOT, Settings
from tests.notebook_runner import FIGURE_KEY, run_notebook

NOTEBOOK = REPO_ROOT / "notebooks" / "03_monitoring.ipynb"


def test_notebook_is_committed_without_outputs_and_matches_its_builder() -> None:
    import importlib.util

    raw = json.loads(NOTEBOOK.read_text())
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    spec = importlib.util.spec_from_file_location("nb03_build", REPO_ROOT / "notebooks" / "03_monitoring_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = [(c.source, c.metadata.get(FIGURE_KEY)) for c in module.build().cells]
    stored = [
        ("".join(c["source"]) if isinstance(c["source"], list) else c["source"], c["metadata"].get(FIGURE_KEY))
        for c in raw["cells"]
    ]
    assert built == stored, "the .ipynb is stale: run `python notebooks/03_monitoring_build.py`"
    assert sorted(name for _, name in built if name) == sorted(module.FIGURES)
    assert "Agg" not in "".join(source for source, _ in built)


@pytest.mark.slow
def test_notebook_opens_the_latest_reports_and_the_promotion_log(tmp_path: Path) -> None:
    from datetime import timedelta

    from monitoring.pipeline import run_monitoring
    from monitoring.sources import read_served_window
    from tests.test_monitoring_pipeline import END, _log_traffic, _reference
    from training.registry import PromotionDecision, promotion_log_path

    settings = Settings(home=tmp_path)
    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    _log_traffic(uri, 400, seed=3, shift=0.6, acceptance_lift=3.0)
    references = {m: _reference(m, 30) for m in ("churn", "nba")}
    for days, end in ((0.5, END - timedelta(days=5)), (30, END)):  # a window too small to judge, then a month
        served = read_served_window(uri, window_days=days, end=end)
        run_monitoring(settings, references=references, served=served, window_days=days)
    decision = PromotionDecision(
        model="nba",
        challenger_version="2",
        champion_version="1",
        promoted=True,
        reason="challenger wins on the recent holdout",
        challenger_metrics={"roc_auc": 0.74},
        champion_metrics={"roc_auc": 0.70},
        holdout={"rows": 500},
        rule={"min_auc_gain": 0.002},
    )
    promotion_log_path(settings).write_text(json.dumps(decision.to_record()) + "\n")
    retrain = {
        "ts": "2026-05-01T00:00:00+00:00",
        "model": "nba",
        "version": "2",
        "promoted": True,
        "reason": "better: AUC 0.74 vs 0.70",
        "sources": {"logged": 900, "served": 321},
        "reload": {"mode": "admin_reload", "ok": True},
        "trigger": "reports/x/verdict.json",
    }
    (settings.reports_dir / "retrains.jsonl").write_text(json.dumps(retrain) + "\n")

    run = run_notebook(NOTEBOOK, {"NEXTBEST_HOME": str(tmp_path)})
    outputs, text = run.outputs, run.text
    assert not [o for o in outputs if o.get("output_type") == "error"]
    run.assert_figures(["inputs_under_the_policy", "drift_history"])
    assert "overall: DRIFT" in text
    assert "share of inputs drifted" in text  # what the Evidently dashboards plot, read back
    assert "evidently ui --workspace" in text
    assert "challenger wins on the recent holdout" in text
    assert "admin_reload" in text and "321" in text  # the retrain record: served rows, service reload


@pytest.mark.slow
def test_notebook_runs_on_a_fresh_demo_home_without_any_monitoring_run(tmp_path: Path) -> None:
    """Right after `make demo`: the workspace and its dashboards exist, no monitoring run yet (the demo's are the
    loop's): every cell runs and says where the runs are."""
    from nextbest.jobs.demo import notebook_hints, prepare_monitoring

    settings = Settings(home=tmp_path)
    prepare_monitoring(settings)  # the demo's step 9
    notebook, home, _ = next(h for h in notebook_hints(settings) if h[0].endswith("03_monitoring.ipynb"))
    assert REPO_ROOT / notebook == NOTEBOOK and home == tmp_path  # the demo's hint: this notebook, this home
    run = run_notebook(NOTEBOOK, {"NEXTBEST_HOME": str(home)})
    assert not [o for o in run.outputs if o.get("output_type") == "error"]
    assert "no monitoring run in this state folder yet" in run.text
    assert "NEXTBEST_HOME=.nextbest/loop" in run.text
    assert "'business', 'churn', 'nba'" in run.text


def test_the_demo_hints_name_notebooks_that_exist_and_the_home_each_reads(tmp_path: Path) -> None:
    from nextbest.jobs.demo import notebook_hints

    settings = Settings(home=tmp_path)
    hints = notebook_hints(settings)
    assert [n for n, _, _ in hints] == sorted(str(p.relative_to(REPO_ROOT)) for p in NOTEBOOK.parent.glob("*.ipynb"))
    assert all(home == tmp_path for _, home, _ in hints)  # no closed loop yet: notebook 03 reads this home
    (tmp_path / "loop" / "reports").mkdir(parents=True)
    (tmp_path / "loop" / "reports" / "verdicts.jsonl").write_text("{}\n")
    assert dict((n, h) for n, h, _ in notebook_hints(settings))["notebooks/03_monitoring.ipynb"] == tmp_path / "loop"
