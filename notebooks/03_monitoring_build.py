"""Build `notebooks/03_monitoring.ipynb` with nbformat (no outputs committed).

Run from the repo root: `uv run --frozen python notebooks/03_monitoring_build.py`. The notebook is for MLOps: it
opens the latest monitoring run (verdicts and why, the worst-drifting inputs, the business view), the history of
verdicts, the Evidently workspace and the promotion log. It only reads what `nextbest monitor` and training wrote;
all logic lives in `monitoring/` and `training/`.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).with_name("03_monitoring.ipynb")

CELLS = [
    new_markdown_cell(
        "# Monitoring: the latest drift verdict, its reports, and the promotion log\n\n"
        "Everything here was written by `nextbest monitor` (Evidently reports in the workspace and as HTML/JSON, "
        "`verdict.json`, `verdicts.jsonl`) and by training's promotion gate (`promotions.jsonl`). The state folder "
        "comes from `NEXTBEST_HOME` (default `.nextbest/`). For the interactive history, run the `evidently ui` "
        "command printed below."
    ),
    new_code_cell(
        "import json\n"
        "from pathlib import Path\n"
        "\n"
        "import pandas as pd\n"
        "\n"
        "from monitoring.store import (\n"
        "    drift_table, list_runs, open_workspace, read_verdicts, ui_command, workspace_dir\n"
        ")\n"
        "from nextbest.settings import load_settings\n"
        "\n"
        "settings = load_settings()  # reads NEXTBEST_HOME\n"
        "verdicts = read_verdicts(settings.reports_dir)\n"
        "print('state folder:', settings.home)\n"
        "print('monitoring runs so far:', len(verdicts))\n"
        "print('Evidently UI:', ui_command(workspace_dir(settings)))\n"
        "assert verdicts, 'no monitoring run yet: run `nextbest monitor` first'\n"
        "latest = verdicts[-1]"
    ),
    new_markdown_cell("## The latest verdict\nOne row per model: drift or not, and every rule that fired."),
    new_code_cell(
        "print('window:', ' .. '.join(latest['window']), '| overall:', 'DRIFT' if latest['drifted'] else 'no drift')\n"
        "pd.DataFrame(\n"
        "    [\n"
        "        {\n"
        "            'model': name,\n"
        "            'drifted': m['drifted'],\n"
        "            'drifted inputs': len(m['drifted_features']),\n"
        "            'monitored inputs': m['monitored_columns'],\n"
        "            'why': ' | '.join(m['reasons']),\n"
        "        }\n"
        "        for name, m in latest['models'].items()\n"
        "    ]\n"
        ")"
    ),
    new_markdown_cell(
        "## The inputs that moved most\nPer model, the worst columns of the input-drift report: the distance score "
        "against its threshold, Evidently's test, and the two guards that can clear a flag (the noise floor of "
        "small windows, the trend the training window itself had)."
    ),
    new_code_cell(
        "for name, m in latest['models'].items():\n"
        "    drift_json = next(Path(p).with_suffix('.json') for p in m['reports'] if 'data-drift' in p)\n"
        "    print(name, drift_json)\n"
        "    display(pd.DataFrame(drift_table(drift_json, top=10)).round(4))"
    ),
    new_markdown_cell("## Business view of the window"),
    new_code_cell(
        "if latest.get('business'):\n"
        "    business = json.loads(Path(latest['business']).with_suffix('.json').read_text())['summary']\n"
        "    display(pd.Series(business).to_frame('value'))\n"
        "else:\n"
        "    print('no decisions in the window')"
    ),
    new_markdown_cell(
        "## History\nEvery monitoring run, and the runs each Evidently project holds (the UI plots them)."
    ),
    new_code_cell(
        "history = pd.DataFrame(\n"
        "    [\n"
        "        {'run': v['ts'], 'model': name, 'drifted': m['drifted'], 'drifted share': m['drifted_share']}\n"
        "        for v in verdicts\n"
        "        for name, m in v['models'].items()\n"
        "    ]\n"
        ")\n"
        "workspace = open_workspace(workspace_dir(settings))\n"
        "print({project: len(list_runs(workspace, project)) for project in ('churn', 'nba', 'business')})\n"
        "history.tail(20)"
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
