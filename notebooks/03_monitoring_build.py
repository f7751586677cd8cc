"""Build `notebooks/03_monitoring.ipynb` with nbformat (no outputs committed).

Run from the repo root: `uv run --frozen python notebooks/03_monitoring_build.py`. The notebook is for MLOps: it
opens the latest monitoring run (verdicts and why, the worst-drifting inputs, the business view), the history of
verdicts, the Evidently workspace and what its dashboards plot, and the promotion log. It only reads what `nextbest
monitor` and training wrote; all logic lives in `monitoring/` and `training/`. It runs on a state folder without any
monitoring run too (right after `make demo`, whose monitoring runs are the closed loop's, under `.nextbest/loop`).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).with_name("03_monitoring.ipynb")
FIGURE_KEY = "nextbest_figure"  # the figure a cell draws (tests/notebook_runner.py checks it is displayed)
FIGURES = ("inputs_under_the_policy", "drift_history")


def figure_cell(name: str, source: str) -> nbformat.NotebookNode:
    """A code cell that draws the figure `name` inline (when there is something to draw)."""
    return new_code_cell(source, metadata={FIGURE_KEY: name})


CELLS = [
    new_markdown_cell(
        "# Monitoring: the latest drift verdict, its reports, and the promotion log\n\n"
        "Everything here was written by `nextbest monitor` (Evidently reports in the workspace and as HTML/JSON, "
        "`verdict.json`, `verdicts.jsonl`) and by training's promotion gate (`promotions.jsonl`). The state folder "
        "comes from `NEXTBEST_HOME` (default `.nextbest/`); after `make demo`, the monitoring runs are the closed "
        "loop's: `NEXTBEST_HOME=.nextbest/loop`. For the interactive history, run the `evidently ui` command printed "
        "below: its reports show the same drift policy and the same counts as the verdicts here."
    ),
    new_code_cell(
        "import json\n"
        "from pathlib import Path\n"
        "\n"
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n"
        "from matplotlib.ticker import MaxNLocator\n"
        "\n"
        "from monitoring.store import (\n"
        "    dashboard_series, drift_table, list_runs, open_workspace, read_verdicts, ui_command, workspace_dir\n"
        ")\n"
        "from nextbest.project import project_of\n"
        "from nextbest.settings import load_settings\n"
        "\n"
        "settings = load_settings()  # reads NEXTBEST_HOME\n"
        "policy = project_of(settings).drift\n"
        "verdicts = read_verdicts(settings.reports_dir)\n"
        "workspace = open_workspace(workspace_dir(settings))\n"
        "projects = sorted(p.name for p in workspace.list_projects())\n"
        "latest = verdicts[-1] if verdicts else None\n"
        "print('state folder:', settings.home)\n"
        "print('Evidently UI:', ui_command(workspace_dir(settings)), '| projects:', projects)\n"
        "print('monitoring runs so far:', len(verdicts))\n"
        "if not verdicts:\n"
        "    print('no monitoring run in this state folder yet: run `nextbest monitor` '\n"
        "          '(after `make demo`, open the closed loop\\'s: NEXTBEST_HOME=.nextbest/loop)')"
    ),
    new_markdown_cell("## The latest verdict\nOne row per model: drift or not, and every rule that fired."),
    new_code_cell(
        "if latest:\n"
        "    overall = 'DRIFT' if latest['drifted'] else 'no drift'\n"
        "    print('window:', ' .. '.join(latest['window']), '| overall:', overall)\n"
        "    display(pd.DataFrame([\n"
        "        {\n"
        "            'model': name,\n"
        "            'drifted': m['drifted'],\n"
        "            'enough data': m['enough_data'],\n"
        "            'drifted inputs': len(m['drifted_features']),\n"
        "            'monitored inputs': m['monitored_columns'],\n"
        "            'why': ' | '.join(m['reasons']),\n"
        "        }\n"
        "        for name, m in latest['models'].items()\n"
        "    ]))"
    ),
    new_markdown_cell(
        "## The inputs under the drift policy\nPer model, the inputs that came closest to drifting: the score "
        "against the policy's threshold (1 = at the threshold) and the threshold actually applied once the two "
        "guards had their say (the noise floor of small windows, the trend the training window itself had). An "
        "input drifts when its bar passes its own marker; the Evidently report uses the same thresholds."
    ),
    figure_cell(
        "inputs_under_the_policy",
        "tables = {}\n"
        "for name, m in (latest or {}).get('models', {}).items():\n"
        "    drift = [Path(p).with_suffix('.json') for p in m['reports'] if 'data-drift' in p]\n"
        "    if drift:\n"
        "        tables[name] = pd.DataFrame(drift_table(drift[0], top=10))\n"
        "if tables:\n"
        "    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 4.6), squeeze=False)\n"
        "    for ax, (name, table) in zip(axes[0], tables.items()):\n"
        "        rows = range(len(table))[::-1]  # worst on top\n"
        "        ax.barh(rows, table['score'] / table['threshold'],\n"
        "                color=['#c44e52' if d else '#4c72b0' for d in table['drifted']])\n"
        "        ax.scatter(table['threshold_applied'] / table['threshold'], rows, marker='|', s=250, color='black',\n"
        "                   label='threshold applied', zorder=3)\n"
        "        ax.axvline(1.0, color='grey', linestyle='--', linewidth=1, label='policy threshold')\n"
        "        ax.set_yticks(rows, table['column'], fontsize=8)\n"
        "        m = latest['models'][name]\n"
        "        state = f\"{len(m['drifted_features'])} drifted (red)\"\n"
        "        state = state if m['enough_data'] else 'too little data: not judged'\n"
        "        ax.set(title=f'{name}: inputs closest to drifting, {state}',\n"
        "               xlabel='score / policy threshold')\n"
        "        ax.legend(fontsize=8, loc='lower right')\n"
        "    fig.tight_layout()\n"
        "    for name, table in tables.items():\n"
        "        print(name)\n"
        "        display(table.round(4))\n"
        "else:\n"
        "    print('no input-drift report in the latest run')",
    ),
    new_markdown_cell("## Business view of the window"),
    new_code_cell(
        "if latest and latest.get('business'):\n"
        "    business = json.loads(Path(latest['business']).with_suffix('.json').read_text())['summary']\n"
        "    display(pd.Series(business).to_frame('value'))\n"
        "else:\n"
        "    print('no decisions in the window' if latest else 'no monitoring run yet')"
    ),
    new_markdown_cell(
        "## History\nThe share of inputs drifted under the policy, run after run (the first rule's alarm level "
        "dashed, drift verdicts in red). A window with too little data to judge is marked as such (grey band) and "
        "not drawn as a measurement, as on the Evidently dashboards."
    ),
    figure_cell(
        "drift_history",
        "history = pd.DataFrame([\n"
        "    {'run': i + 1, 'ts': v['ts'], 'model': name, 'drifted': m['drifted'], 'enough data': m['enough_data'],\n"
        "     'drifted share': m['drifted_share'], 'monitored inputs': m['monitored_columns']}\n"
        "    for i, v in enumerate(verdicts)\n"
        "    for name, m in v['models'].items()\n"
        "])\n"
        "judged = sorted(set(history['model'][history['monitored inputs'] > 0])) if len(history) else []\n"
        "if judged:\n"
        "    fig, axes = plt.subplots(1, len(judged), figsize=(6 * len(judged), 3.4), squeeze=False, sharey=True)\n"
        "    for ax, name in zip(axes[0], judged):\n"
        "        runs = history[history['model'] == name]\n"
        "        measured, small = runs[runs['enough data']], runs[~runs['enough data']]\n"
        "        share = runs['drifted share'].where(runs['enough data'])  # a gap, not a point, where not judged\n"
        "        ax.plot(runs['run'], share, 'o-', label='measured window')\n"
        "        alarms = measured[measured['drifted']]\n"
        "        ax.plot(alarms['run'], alarms['drifted share'], 'o', color='#c44e52', label='drift verdict')\n"
        "        for i, run in enumerate(small['run']):\n"
        "            ax.axvspan(run - 0.4, run + 0.4, color='grey', alpha=0.25,\n"
        "                       label='too little data (not judged)' if i == 0 else None)\n"
        "        ax.axhline(policy.drift_share, color='grey', linestyle='--', linewidth=1, label='alarm share')\n"
        "        ax.set_xlim(0.5, len(verdicts) + 0.5)\n"
        "        ax.set_ylim(0, 1.02)\n"
        "        ax.xaxis.set_major_locator(MaxNLocator(integer=True))\n"
        "        ax.set(title=name, xlabel='monitoring run', ylabel='share of inputs drifted')\n"
        "        ax.legend(fontsize=8)\n"
        "    fig.tight_layout()\n"
        "history.tail(20)",
    ),
    new_markdown_cell(
        "## What the Evidently dashboards plot\nEach project's panels as the Evidently UI reads them: every series "
        "named, only runs tagged `measured`; the runs each project holds."
    ),
    new_code_cell(
        "print({project: len(list_runs(workspace, project)) for project in projects})\n"
        "pd.DataFrame([\n"
        "    {'project': project, 'panel': s['panel'], 'series': s['legend'],\n"
        "     'points': sum(x is not None for x in s['values']),\n"
        "     'last': next((x for x in reversed(s['values']) if x is not None), None)}\n"
        "    for project in projects\n"
        "    for s in dashboard_series(workspace_dir(settings), project)\n"
        "])"
    ),
    new_markdown_cell(
        "## Promotion log\nEvery gate decision of training (promoted or not, why, both models' metrics on the same "
        "holdout): after a drift verdict, `nextbest retrain` adds a line here."
    ),
    new_code_cell(
        "from training.registry import read_promotion_log\n"
        "\n"
        "promotions = read_promotion_log(settings)\n"
        "if promotions:\n"
        "    display(pd.json_normalize(promotions)[['when', 'model', 'challenger_version', 'champion_version', "
        "'promoted', 'reason']].tail(10))\n"
        "else:\n"
        "    print('no promotion decisions yet: run `nextbest train` or `nextbest retrain`')"
    ),
    new_markdown_cell(
        "## Retrains and the closed loop\n`retrains.jsonl`: one line per retrained model -- the verdict that "
        "triggered it, the MLflow run, how many training rows were logged contacts and how many served decisions, "
        "the gate's numbers, and whether the running service reloaded the new champion. `nextbest loop` writes its "
        "own state under `<home>/loop`, with the before/after figures in `reports/loop_summary.json`."
    ),
    new_code_cell(
        "def read_jsonl(path):\n"
        "    lines = path.read_text().splitlines() if path.is_file() else []\n"
        "    return [json.loads(line) for line in lines if line.strip()]\n"
        "\n"
        "retrains = read_jsonl(settings.reports_dir / 'retrains.jsonl')\n"
        "if retrains:\n"
        "    cols = ['ts', 'model', 'version', 'promoted', 'reason', 'sources.logged', 'sources.served', "
        "'reload.mode', 'reload.ok', 'trigger']\n"
        "    frame = pd.json_normalize(retrains)\n"
        "    display(frame[[c for c in cols if c in frame.columns]].tail(10))\n"
        "else:\n"
        "    print('no retrain yet: `nextbest retrain` or `nextbest monitor --retrain` adds one')\n"
        "loop_summary = settings.home / 'loop' / 'reports' / 'loop_summary.json'\n"
        "if loop_summary.is_file():\n"
        "    loop = json.loads(loop_summary.read_text())\n"
        "    print(f\"closed loop: {loop['scenario']} from day {loop['drift_day']}, detected after \"\n"
        "          f\"{loop['detection_days']} day(s) of traffic, promoted on day {loop['promoted_day']}\")\n"
        "    display(pd.DataFrame(loop['phases']))\n"
        "else:\n"
        "    print('no closed-loop run yet: `nextbest loop` (or the end of `make demo`)')"
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    nbformat.write(build(), OUT)
