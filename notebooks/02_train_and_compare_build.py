"""Build `notebooks/02_train_and_compare.ipynb` with nbformat (no outputs committed).

Run from the repo root: `uv run --frozen python notebooks/02_train_and_compare_build.py`. The notebook is
generated so that its source lives in a reviewable Python file and the committed .ipynb never carries outputs.
It only calls library functions: notebooks explore, modules do the work (no pipeline logic is pasted here).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).with_name("02_train_and_compare.ipynb")

CELLS = [
    new_markdown_cell(
        "# Train and compare: churn and next-best-action models, runs in MLflow, the evaluation ladder\n\n"
        "This notebook drives the same functions as `nextbest train` and `nextbest evaluate`: it tunes both models "
        "with a tiny Optuna budget, compares the runs through the MLflow client, and reads the evaluation ladder "
        "(each policy's value per 1,000 decisions against the simulator's truth).\n\n"
        "Parameters come from the environment: `NEXTBEST_HOME` (the state folder with a simulated world and "
        "applied feature repo; default `.nextbest/`), `NB_TRIALS` (tuning trials per model, default 2), "
        "`NB_MAX_ROUNDS` (boosting rounds per trial, default 400) and `NB_DECISIONS` (decision points of the "
        "ladder, default 500)."
    ),
    new_code_cell(
        "import os\n"
        "\n"
        "import matplotlib\n"
        "\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "import mlflow\n"
        "import pandas as pd\n"
        "\n"
        "from nextbest.settings import load_settings\n"
        "\n"
        "TRIALS = int(os.environ.get('NB_TRIALS', '2'))\n"
        "MAX_ROUNDS = int(os.environ.get('NB_MAX_ROUNDS', '400'))\n"
        "DECISIONS = int(os.environ.get('NB_DECISIONS', '500'))\n"
        "settings = load_settings()  # reads NEXTBEST_HOME\n"
        "print('state folder:', settings.home)\n"
        "print('MLflow tracking:', settings.mlflow_tracking_uri)\n"
        "assert (settings.sources_dir).exists(), 'simulate a world first: nextbest simulate'"
    ),
    new_markdown_cell(
        "## Train both models\n"
        "`train_model` runs the Optuna study (nested MLflow runs), logs the final model, registers a new version "
        "as `challenger` and lets the promotion gate decide whether it becomes `champion`."
    ),
    new_code_cell(
        "from training.pipeline import train_model\n"
        "from training.tune import TuningConfig\n"
        "\n"
        "config = TuningConfig(max_rounds=MAX_ROUNDS)\n"
        "results = {name: train_model(settings, name, trials=TRIALS, config=config) for name in ('churn', 'nba')}\n"
        "for name, result in results.items():\n"
        "    print(name, result)"
    ),
    new_markdown_cell("## Compare runs through the MLflow client"),
    new_code_cell(
        "from mlflow import MlflowClient\n"
        "\n"
        "mlflow.set_tracking_uri(settings.mlflow_tracking_uri)\n"
        "client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)\n"
        "prefix = settings.mlflow.experiment_prefix\n"
        "runs = mlflow.search_runs(\n"
        "    experiment_names=[f'{prefix}-churn', f'{prefix}-nba'],\n"
        '    filter_string="tags.mlflow.parentRunId IS NULL",\n'
        "    order_by=['start_time DESC'],\n"
        ")\n"
        "metric_cols = [c for c in runs.columns if c in {\n"
        "    'metrics.roc_auc', 'metrics.pr_auc', 'metrics.log_loss', 'metrics.ece', 'metrics.lift_top_decile'}]\n"
        "summary = runs[['experiment_id', 'run_id', 'tags.mlflow.runName', *metric_cols]]\n"
        "summary"
    ),
    new_code_cell(
        "for name in ('churn', 'nba'):\n"
        "    versions = client.search_model_versions(f\"name='{name}'\")\n"
        "    for mv in sorted(versions, key=lambda v: int(v.version)):\n"
        "        print(name, f'v{mv.version}', 'aliases:', list(mv.aliases), 'run', mv.run_id)"
    ),
    new_code_cell(
        "# Trials of the latest NBA study, as nested runs under its parent run.\n"
        "parent = runs[runs['experiment_id'] == client.get_experiment_by_name(f'{prefix}-nba').experiment_id]\n"
        "parent_id = parent['run_id'].iloc[0]\n"
        "trials = mlflow.search_runs(\n"
        "    experiment_names=[f'{prefix}-nba'], filter_string=f\"tags.mlflow.parentRunId = '{parent_id}'\"\n"
        ")\n"
        "print(len(trials), 'trial runs under', parent_id)\n"
        "trials.filter(regex='^(run_id|params\\\\.|metrics\\\\.)').head()"
    ),
    new_markdown_cell(
        "## The evaluation ladder\n"
        "Every stage picks one action (or none) per held-out decision point among the same eligible candidates; "
        "the simulator's true acceptance probabilities turn the choices into expected conversions and value. "
        "The report is logged to MLflow (experiment `nextbest-evaluation`); here we run it and read it back."
    ),
    new_code_cell(
        "from training.evaluate import EvaluationOptions, run_evaluation\n"
        "\n"
        "report = run_evaluation(settings, EvaluationOptions(decisions=DECISIONS, stage3_trials=1))\n"
        "print('MLflow run:', report.run_id)\n"
        "report.ladder"
    ),
    new_code_cell(
        "# Read the ladder back from the MLflow run's artefacts, as anyone with the tracking URI can.\n"
        "local = mlflow.artifacts.download_artifacts(run_id=report.run_id, artifact_path='evaluation/ladder.csv')\n"
        "ladder = pd.read_csv(local)\n"
        "ax = ladder.plot.barh(x='stage', y='value_per_1000', legend=False, figsize=(8, 3))\n"
        "ax.set_xlabel('expected value per 1,000 decisions (EUR)')\n"
        "ax.invert_yaxis()\n"
        "plt.tight_layout()\n"
        "ladder[['stage', 'conversions_per_1000', 'value_per_1000', 'share_of_oracle_value']]"
    ),
    new_markdown_cell(
        "Off-policy estimates of the stage-5 policy from the logs alone, beside its true value, and each model's "
        "ROC-AUC beside the Bayes-optimal AUC of the same holdout (the ceiling no model can pass)."
    ),
    new_code_cell("report.ope"),
    new_code_cell("report.model_quality"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    nbformat.write(build(), OUT)
