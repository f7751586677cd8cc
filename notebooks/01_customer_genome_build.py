"""Build `notebooks/01_customer_genome.ipynb` with nbformat (no outputs committed).

Run from the repo root: `uv run --frozen python notebooks/01_customer_genome_build.py`. The notebook's source lives
in this reviewable file; the .ipynb never carries outputs. It only calls library functions (`nextbest.features`,
`feature_repo`): notebooks explore, modules do the work. `tests/test_features_notebook.py` executes it on a tiny world.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).with_name("01_customer_genome.ipynb")
FIGURE_KEY = "nextbest_figure"  # the figure a cell draws (tests/notebook_runner.py checks it is displayed)
FIGURES = ("signals_and_contacts", "features_over_time")


def figure_cell(name: str, source: str) -> nbformat.NotebookNode:
    """A code cell that draws the figure `name` inline."""
    return new_code_cell(source, metadata={FIGURE_KEY: name})


CELLS = [
    new_markdown_cell(
        "# The customer genome: a few customers through the feature repo\n\n"
        "What the models see about a customer, and when: the source rows (profile, holdings, signals, contacts), "
        "the daily point-in-time feature snapshots built by `feature_repo/pipeline.py`, a training frame from Feast's "
        "`get_historical_features`, and an online read through the `nba_v1` feature service with request context.\n\n"
        "Parameters from the environment: `NEXTBEST_HOME` (state folder with a simulated world; default `.nextbest/`) "
        "and `NB_CUSTOMERS` (how many customers to look at, default 3). If the feature tables are missing they are "
        "built, applied and materialized first (`nextbest features build|apply|materialize`)."
    ),
    new_code_cell(
        "import os\n"
        "\n"
        "import matplotlib.dates as mdates\n"
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n"
        "\n"
        "import nextbest.features as nf\n"
        "from feature_repo.specs import SIGNAL_HALF_LIFE_HOURS, VIEW_FIELDS\n"
        "from nextbest.features.store import feature_tables_end, offline_dir\n"
        "from nextbest.settings import load_settings\n"
        "\n"
        "N_CUSTOMERS = int(os.environ.get('NB_CUSTOMERS', '3'))\n"
        "\n"
        "\n"
        "def date_axis(ax):\n"
        '    """Few, short date labels (no overlap in narrow panels)."""\n'
        "    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)\n"
        "    ax.xaxis.set_major_locator(locator)\n"
        "    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))\n"
        "\n"
        "\n"
        "settings = load_settings()  # reads NEXTBEST_HOME\n"
        "print('state folder:', settings.home)\n"
        "assert settings.sources_dir.exists(), 'simulate a world first: nextbest simulate'"
    ),
    new_code_cell(
        "if not (offline_dir(settings) / 'customer_profile.parquet').exists():\n"
        "    genome = nf.features_of(settings)  # the simulated bank's FeatureProject\n"
        "    genome.build()\n"
        "    genome.apply()\n"
        "    genome.materialize()\n"
        "store = nf.get_store(settings)\n"
        "now = feature_tables_end(settings)  # the world's clock: the newest feature snapshot\n"
        "print('world now:', now)"
    ),
    new_markdown_cell(
        "## Pick customers\n"
        "One who had an airport check-in, one who closed the relationship (if any), and the most contacted one."
    ),
    new_code_cell(
        "src = {name: pd.read_parquet(settings.sources_dir / name) if (settings.sources_dir / name).is_dir()\n"
        "       else pd.read_parquet(settings.sources_dir / f'{name}.parquet')\n"
        "       for name in ('customers', 'holdings', 'context_signals', 'contacts', 'closures')}\n"
        "picks = []\n"
        "travellers = src['context_signals'].query(\"signal == 'airport_checkin'\")['customer_id']\n"
        "if len(travellers):\n"
        "    picks.append(int(travellers.iloc[0]))\n"
        "if len(src['closures']):\n"
        "    picks.append(int(src['closures']['customer_id'].iloc[0]))\n"
        "for customer_id in src['contacts']['customer_id'].value_counts().index:\n"
        "    if len(picks) >= N_CUSTOMERS:\n"
        "        break\n"
        "    if int(customer_id) not in picks:\n"
        "        picks.append(int(customer_id))\n"
        "picks = picks[:N_CUSTOMERS]\n"
        "picks"
    ),
    new_markdown_cell("## Profile and holdings (source rows)"),
    new_code_cell(
        "profile = src['customers'][src['customers']['customer_id'].isin(picks)]\n"
        "display(profile.sort_values(['customer_id', 'valid_from']).set_index('customer_id'))\n"
        "display(src['holdings'][src['holdings']['customer_id'].isin(picks)].sort_values(['customer_id', 'opened_at']))"
    ),
    new_markdown_cell(
        "## Signals and contacts over time\n"
        "Real-time context signals (dots) and the campaign contacts shown to the customer (crosses: accepted in green)."
    ),
    figure_cell(
        "signals_and_contacts",
        "signals = src['context_signals'][src['context_signals']['customer_id'].isin(picks)]\n"
        "contacts = src['contacts'][src['contacts']['customer_id'].isin(picks)]\n"
        "shown = [c for c in picks if (signals['customer_id'] == c).any() or (contacts['customer_id'] == c).any()]\n"
        "rows = {c: sorted(signals.loc[signals['customer_id'] == c, 'signal'].unique()) + ['contact'] for c in shown}\n"
        "heights = [0.3 * len(r) + 0.6 for r in rows.values()]\n"
        "palette = dict(zip(sorted(signals['signal'].unique()), plt.cm.tab10.colors * 3))  # one colour per signal\n"
        "fig, axes = plt.subplots(len(shown), 1, figsize=(10, sum(heights) + 0.8), sharex=True, squeeze=False,\n"
        "                         gridspec_kw={'height_ratios': heights})\n"
        "for ax, customer_id in zip(axes[:, 0], shown):\n"
        "    names = rows[customer_id]\n"
        "    for signal, group in signals[signals['customer_id'] == customer_id].groupby('signal'):\n"
        "        ax.scatter(group['ts'], [names.index(signal)] * len(group), s=14, color=palette[signal])\n"
        "    mine = contacts[contacts['customer_id'] == customer_id]\n"
        "    colours = mine['accepted'].map({True: 'green', False: 'grey'})\n"
        "    ax.scatter(mine['ts'], [names.index('contact')] * len(mine), marker='x', c=colours)\n"
        "    ax.set_yticks(range(len(names)), names, fontsize=8)\n"
        "    ax.set_ylim(-0.6, len(names) - 0.4)\n"
        "    ax.set_title(f'customer {customer_id}', fontsize=9, loc='left')\n"
        "date_axis(axes[-1, 0])\n"
        "fig.suptitle('Context signals (dots) and contacts (crosses, accepted in green)')\n"
        "fig.tight_layout()",
    ),
    new_markdown_cell(
        "## Features over time (daily point-in-time snapshots)\n"
        "Each row stamped t uses only source rows before t. These tables are the offline store Feast reads."
    ),
    figure_cell(
        "features_over_time",
        "activity = pd.read_parquet(offline_dir(settings) / 'customer_activity.parquet')\n"
        "contacts_fv = pd.read_parquet(offline_dir(settings) / 'contact_history.parquet')\n"
        "fig, axes = plt.subplots(len(picks), 3, figsize=(13, 2.6 * len(picks) + 0.6), sharex=True, squeeze=False)\n"
        "for row, customer_id in zip(axes, picks):\n"
        "    a = activity.query('customer_id == @customer_id').sort_values('event_timestamp')\n"
        "    c = contacts_fv.query('customer_id == @customer_id').sort_values('event_timestamp')\n"
        "    row[0].plot(a['event_timestamp'], a['current_balance'] + a['savings_balance'])\n"
        "    row[0].set_title(f'{customer_id}: deposits (EUR)', fontsize=9)\n"
        "    row[1].plot(a['event_timestamp'], a['logins_30d'], label='logins 30d')\n"
        "    row[1].plot(a['event_timestamp'], a['travel_amount_30d'] / 100, label='travel spend 30d / 100')\n"
        "    row[1].set_title(f'{customer_id}: activity', fontsize=9)\n"
        "    row[1].legend(fontsize=7, loc='upper left')\n"
        "    row[2].step(c['event_timestamp'], c['contacts_30d'], label='contacts 30d')\n"
        "    row[2].step(c['event_timestamp'], c['dismissals_30d'], label='dismissals 30d')\n"
        "    row[2].set_title(f'{customer_id}: contact history', fontsize=9)\n"
        "    row[2].legend(fontsize=7, loc='upper left')\n"
        "for ax in axes[-1]:\n"
        "    date_axis(ax)\n"
        "fig.suptitle('Daily point-in-time feature snapshots')\n"
        "fig.tight_layout()\n"
        "print({view: len(fields) for view, fields in VIEW_FIELDS.items()}, 'features per view')",
    ),
    new_markdown_cell(
        "## A training frame from Feast (point in time)\n"
        "Entity rows at a few times for the first customer, joined by `get_historical_features` with the "
        "`churn_v1` feature service: later rows see more history, never the future."
    ),
    new_code_cell(
        "first = picks[0]\n"
        "times = pd.date_range(end=now, periods=4, freq='14D', tz='UTC') + pd.Timedelta(hours=9)\n"
        "entity = pd.DataFrame({'customer_id': first, 'event_timestamp': times})\n"
        "frame = store.get_historical_features(\n"
        "    entity_df=entity, features=store.get_feature_service(nf.CHURN_SERVICE)\n"
        ").to_df()\n"
        "cols = ['event_timestamp', 'tenure_days', 'n_products', 'logins_30d', 'travel_amount_30d', 'contacts_30d',\n"
        "        'days_since_contact']\n"
        "frame.sort_values('event_timestamp')[cols]"
    ),
    new_markdown_cell(
        "## Online read through `nba_v1`\n"
        "The same customer as the serving path sees it: materialized features plus the on-demand request context "
        "(recency and decayed strength of each signal at request time, channel and location). Two requests at the "
        "world's now: in the app at home, and a push at the airport."
    ),
    new_code_cell(
        "requests = {\n"
        "    'app @ home': nf.request_context('app', at=now, location_type='home'),\n"
        "    'push @ airport': nf.request_context('push', at=now, location_type='airport'),\n"
        "}\n"
        "online = pd.concat({\n"
        "    name: nf.online_features(store, [first], service=nf.NBA_SERVICE, request=request)\n"
        "    for name, request in requests.items()\n"
        "})\n"
        "show = ['income_monthly', 'n_products', 'logins_30d'] + [f'hours_since_{s}' for s in SIGNAL_HALF_LIFE_HOURS]\n"
        "show += ['airport_checkin_strength', 'channel_app', 'channel_push', 'location_airport']\n"
        "online[show].T"
    ),
    new_markdown_cell(
        "## Next\n"
        "`nextbest features read --customer-id N` prints the same online row; `nextbest features push` sends a "
        "real-time event through the push source; training builds its sets with the feature services shown here."
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook object (no outputs)."""
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    nbformat.write(build(), OUT)
