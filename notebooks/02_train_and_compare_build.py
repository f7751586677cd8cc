"""Build `notebooks/02_train_and_compare.ipynb` with nbformat (no outputs committed).

Run from the repo root: `uv run --frozen python notebooks/02_train_and_compare_build.py`. The notebook is
generated so that its source lives in a reviewable Python file and the committed .ipynb never carries outputs.
It only calls library functions: notebooks explore, modules do the work (no pipeline logic is pasted here). It
reads the registry and the tracking server as the CLI left them; it writes nothing unless asked (`NB_TRAIN=1`
trains and registers, `NB_EVALUATE=1` runs the ladder when no evaluation run exists).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).with_name("02_train_and_compare.ipynb")
FIGURE_KEY = "nextbest_figure"  # the figure a cell draws (tests/notebook_runner.py checks it is displayed)
FIGURES = ("registered_versions", "tuning_trials", "evaluation_ladder")


def figure_cell(name: str, source: str) -> nbformat.NotebookNode:
    """A code cell that draws the figure `name` inline."""
    return new_code_cell(source, metadata={FIGURE_KEY: name})


CELLS = [
    new_markdown_cell(
        "# Train and compare: the registered models, their runs in MLflow, the evaluation ladder\n\n"
        "This notebook reads what `nextbest train` and `nextbest evaluate` left in MLflow: the registry's versions "
        "of each model with their aliases (`champion`, `challenger`), the training runs and their Optuna trials, and "
        "the evaluation ladder (each policy's value per 1,000 decisions against the simulator's truth). It writes "
        "nothing to your registry unless you ask it to.\n\n"
        "Parameters come from the environment: `NEXTBEST_HOME` (the state folder with a simulated world and its "
        "MLflow store; default `.nextbest/`); `NB_TRAIN=1` trains and registers both models here first (new registry "
        "versions: the same as `nextbest train`; off by default), with `NB_TRIALS` tuning trials per model (default 2) "
        "and `NB_MAX_ROUNDS` boosting rounds per trial (default 400); `NB_EVALUATE=1` runs the ladder here when no "
        "evaluation run exists yet (an MLflow run, the same as `nextbest evaluate`), with `NB_DECISIONS` decision "
        "points (default 500)."
    ),
    new_code_cell(
        "import json\n"
        "import os\n"
        "\n"
        "import matplotlib.pyplot as plt\n"
        "import mlflow\n"
        "import pandas as pd\n"
        "from mlflow import MlflowClient\n"
        "\n"
        "from nextbest.project import project_of\n"
        "from nextbest.settings import load_settings\n"
        "\n"
        "TRAIN = os.environ.get('NB_TRAIN', '0') == '1'\n"
        "EVALUATE = os.environ.get('NB_EVALUATE', '0') == '1'\n"
        "TRIALS = int(os.environ.get('NB_TRIALS', '2'))\n"
        "MAX_ROUNDS = int(os.environ.get('NB_MAX_ROUNDS', '400'))\n"
        "DECISIONS = int(os.environ.get('NB_DECISIONS', '500'))\n"
        "settings = load_settings()  # reads NEXTBEST_HOME\n"
        "MODELS = [m.name for m in project_of(settings).models]\n"
        "mlflow.set_tracking_uri(settings.mlflow_tracking_uri)\n"
        "client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)\n"
        "prefix = settings.mlflow.experiment_prefix\n"
        "print('state folder:', settings.home)\n"
        "print('MLflow tracking:', settings.mlflow_tracking_uri)\n"
        "print('models:', MODELS, '| train here:', TRAIN, '| evaluate here if needed:', EVALUATE)"
    ),
    new_markdown_cell(
        "## Training (only with `NB_TRAIN=1`)\n"
        "Training belongs to the CLI (`nextbest train`): it runs the Optuna study (nested MLflow runs), logs the final "
        "model, registers a new version as `challenger` and lets the promotion gate decide whether it becomes "
        "`champion`. With `NB_TRAIN=1` this cell does the same here."
    ),
    new_code_cell(
        "if TRAIN:\n"
        "    from training.pipeline import train_model\n"
        "    from training.tune import TuningConfig\n"
        "\n"
        "    config = TuningConfig(max_rounds=MAX_ROUNDS)\n"
        "    for name in MODELS:\n"
        "        print(name, train_model(settings, name, trials=TRIALS, config=config))\n"
        "else:\n"
        "    print('reading the registry as the CLI left it (NB_TRAIN=1 trains here)')"
    ),
    new_markdown_cell(
        "## The registry: every version and its aliases\n"
        "Aliases are read per version (`get_model_version`) and checked by name (`get_model_version_by_alias`): "
        "MLflow 3's `search_model_versions` leaves a version's aliases empty. The test metrics are those of the "
        "version's training run, on its own test split (ROC-AUC with its 95% interval)."
    ),
    new_code_cell(
        "TEST_METRICS = ('roc_auc', 'roc_auc_ci_low', 'roc_auc_ci_high', 'pr_auc', 'log_loss', 'ece')\n"
        "\n"
        "\n"
        "def version_rows(name):\n"
        "    rows = []\n"
        "    for found in client.search_model_versions(f\"name='{name}'\"):\n"
        "        mv = client.get_model_version(name, found.version)  # fills aliases\n"
        "        metrics = client.get_run(mv.run_id).data.metrics\n"
        "        rows.append({'model': name, 'version': int(mv.version), 'aliases': ', '.join(mv.aliases) or '-',\n"
        "                     'run_id': mv.run_id, **{k: metrics.get(f'test_{k}') for k in TEST_METRICS}})\n"
        "    return rows\n"
        "\n"
        "\n"
        "versions = pd.DataFrame([row for name in MODELS for row in version_rows(name)])\n"
        "assert len(versions), 'no registered model yet: run `nextbest train` (or this notebook with NB_TRAIN=1)'\n"
        "for name in MODELS:\n"
        "    for alias in ('champion', 'challenger'):\n"
        "        try:\n"
        "            print(f'{name} @{alias}: v{client.get_model_version_by_alias(name, alias).version}')\n"
        "        except mlflow.exceptions.MlflowException:\n"
        "            print(f'{name} @{alias}: none')\n"
        "versions.sort_values(['model', 'version'])"
    ),
    figure_cell(
        "registered_versions",
        "shown = versions.dropna(subset=['roc_auc']).sort_values('version').groupby('model').tail(8)\n"
        "models = [m for m in MODELS if (shown['model'] == m).any()]\n"
        "tallest = max(shown['model'].value_counts())\n"
        "fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 0.5 * tallest + 1.6), squeeze=False)\n"
        "for ax, name in zip(axes[0], models):\n"
        "    rows = shown[shown['model'] == name]\n"
        "    labels = [f'v{v}' + (f' ({a})' if a != '-' else '') for v, a in zip(rows['version'], rows['aliases'])]\n"
        "    errors = [rows['roc_auc'] - rows['roc_auc_ci_low'], rows['roc_auc_ci_high'] - rows['roc_auc']]\n"
        "    bars = ax.barh(range(len(rows)), rows['roc_auc'], xerr=errors, capsize=3,\n"
        "                   color=['#4c72b0' if 'champion' in a else '#b0b0b0' for a in rows['aliases']])\n"
        "    ax.set_yticks(range(len(rows)), labels)\n"
        "    ax.bar_label(bars, labels=[f'{v:.3f}' for v in rows['roc_auc']], padding=8, fontsize=8)\n"
        "    ax.set_xlim(0.5, 1.05)\n"
        "    ax.set(title=name, xlabel='test ROC-AUC of the training run (95% interval)')\n"
        "fig.suptitle('Registered versions (champion in blue)')\n"
        "fig.tight_layout()",
    ),
    new_markdown_cell("## Training runs through the MLflow client"),
    new_code_cell(
        "runs = mlflow.search_runs(\n"
        "    experiment_names=[f'{prefix}-{name}' for name in MODELS],\n"
        '    filter_string="tags.mlflow.parentRunId IS NULL",\n'
        "    order_by=['start_time DESC'],\n"
        ")\n"
        "metric_cols = [f'metrics.test_{k}' for k in ('roc_auc', 'pr_auc', 'log_loss', 'ece', 'lift_top_decile')]\n"
        "metric_cols = [c for c in metric_cols if c in runs.columns]\n"
        "runs[['experiment_id', 'run_id', 'tags.mlflow.runName', 'start_time', *metric_cols]]"
    ),
    figure_cell(
        "tuning_trials",
        "# The trials of each model's latest study: nested runs under its parent run, one point per trial.\n"
        "def latest_trials(name):\n"
        "    experiment = client.get_experiment_by_name(f'{prefix}-{name}')\n"
        "    parents = runs[runs['experiment_id'] == experiment.experiment_id]['run_id']\n"
        "    for parent_id in parents:\n"
        "        trials = mlflow.search_runs(experiment_names=[experiment.name],\n"
        "                                    filter_string=f\"tags.mlflow.parentRunId = '{parent_id}'\")\n"
        "        if 'metrics.valid_log_loss' in trials and trials['metrics.valid_log_loss'].notna().any():\n"
        "            return parent_id, trials\n"
        "    return None, None\n"
        "\n"
        "\n"
        "studies = {name: latest_trials(name) for name in MODELS}\n"
        "studies = {name: found for name, found in studies.items() if found[0] is not None}\n"
        "fig, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 3.2), squeeze=False)\n"
        "for ax, (name, (parent_id, trials)) in zip(axes[0], studies.items()):\n"
        "    done = trials.dropna(subset=['metrics.valid_log_loss'])\n"
        "    number = done['tags.optuna.trial_number'].astype(int)\n"
        "    ax.plot(number, done['metrics.valid_log_loss'], 'o-', label='trial')\n"
        "    best = done['metrics.valid_log_loss'].idxmin()\n"
        "    ax.plot(number[best], done.loc[best, 'metrics.valid_log_loss'], '*', markersize=14, label='best')\n"
        "    ax.set_xticks(sorted(number.unique()))\n"
        "    ax.set(title=f'{name}: study of run {parent_id[:8]}', xlabel='trial', ylabel='validation log-loss')\n"
        "    ax.legend(fontsize=8)\n"
        "fig.tight_layout()",
    ),
    new_markdown_cell(
        "## The evaluation ladder\n"
        "Every stage picks one action (or none) per held-out decision point among the same eligible candidates; "
        "the simulator's true acceptance probabilities turn the choices into expected conversions and value. "
        "`nextbest evaluate` logs the report to MLflow (experiment `<prefix>-evaluation`); here it is read back from "
        "the latest such run, as anyone with the tracking URI can (`NB_EVALUATE=1` runs it when there is none)."
    ),
    new_code_cell(
        "evaluation = mlflow.search_runs(experiment_names=[f'{prefix}-evaluation'], order_by=['start_time DESC'],\n"
        "                                filter_string=\"tags.`nextbest.job` = 'evaluate'\")\n"
        "if len(evaluation):\n"
        "    run_id = evaluation['run_id'].iloc[0]\n"
        "elif EVALUATE:\n"
        "    from training.evaluate import EvaluationOptions, run_evaluation\n"
        "\n"
        "    run_id = run_evaluation(settings, EvaluationOptions(decisions=DECISIONS, stage3_trials=1)).run_id\n"
        "else:\n"
        "    run_id = None\n"
        "    print('no evaluation run yet: run `nextbest evaluate` (or this notebook with NB_EVALUATE=1)')\n"
        "if run_id:\n"
        "    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path='evaluation/report.json')\n"
        "    report = json.loads(open(local).read())\n"
        "    ladder = pd.DataFrame(report['ladder'])\n"
        "    print('MLflow run:', run_id)\n"
        "    display(ladder[['stage', 'conversions_per_1000', 'value_per_1000', 'share_of_oracle_value']])"
    ),
    figure_cell(
        "evaluation_ladder",
        "if run_id:\n"
        "    fig, ax = plt.subplots(figsize=(9, 0.5 * len(ladder) + 1.4))\n"
        "    rows = range(len(ladder))[::-1]  # first stage on top, as in the table\n"
        "    bars = ax.barh(rows, ladder['value_per_1000'],\n"
        "                   color=['#b0b0b0' if 'oracle' in s else '#4c72b0' for s in ladder['stage']])\n"
        "    ax.set_yticks(rows, ladder['stage'])\n"
        "    ax.bar_label(bars, labels=[f'{v:,.0f}' for v in ladder['value_per_1000']], padding=3, fontsize=8)\n"
        "    ax.set_xlim(0, ladder['value_per_1000'].max() * 1.18)\n"
        "    ax.set(xlabel='expected value per 1,000 decisions (EUR)', title='The evaluation ladder')\n"
        "    fig.tight_layout()",
    ),
    new_markdown_cell(
        "Off-policy estimates of the stage-5 policy from the logs alone, beside its true value, and each model's "
        "ROC-AUC beside the Bayes-optimal AUC of the same holdout (the ceiling no model can pass)."
    ),
    new_code_cell("display(pd.DataFrame(report['ope'])) if run_id else None"),
    new_code_cell("display(pd.DataFrame(report['model_quality'])) if run_id else None"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    nbformat.write(build(), OUT)
