"""The synthetic tables of the worked examples in `configs/examples/` (docs/onboarding.md), seeded, in the shapes
banks export them: what the example files were written from, and what the tests vary (a leaking column, a
constant date).

- `calls_table`: a campaign's outbound calls, one row per call, dated, with NO id (the way a marketing team's
  export often comes); whether the call's customer subscribed, and the call's `duration` -- known only once the
  call has ended, i.e. after the outcome: the classic leak, kept in the file to show what `onboard check` says.
- `customers_table`: a customer extract for churn, one row per customer with an id but NO date (the state at the
  extract); whether the customer left in the following months.
Run `python -m nextbest.onboarding.examples` to rewrite the two CSV files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

JOBS = ["admin.", "blue-collar", "technician", "services", "management", "retired", "entrepreneur", "self-employed",
        "housemaid", "unemployed", "student", "unknown"]  # fmt: skip
EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"


def calls_table(rows: int = 3_000, seed: int = 11, year: int = 2024) -> pd.DataFrame:
    """Outbound campaign calls over one year (daily dates), no id column, `subscribed` 0/1 (module docstring)."""
    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, 366, size=rows))
    date = pd.Timestamp(f"{year}-01-01") + pd.to_timedelta(day, unit="D")
    job = rng.choice(JOBS, size=rows, p=np.array([11, 10, 9, 8, 9, 4, 3, 3, 2, 2, 2, 1]) / 64)
    age = np.clip(np.where(job == "student", 22, np.where(job == "retired", 67, 41)) + rng.normal(0, 8, rows), 18, 92)
    marital = rng.choice(["married", "single", "divorced"], size=rows, p=[0.6, 0.28, 0.12])
    balance = np.round(rng.lognormal(7, 1.1, rows) - 400, 2)
    channel = rng.choice(["cellular", "telephone"], size=rows, p=[0.7, 0.3])
    campaign = 1 + rng.poisson(1.4, rows)
    previous = rng.choice(["nonexistent", "failure", "success"], size=rows, p=[0.8, 0.14, 0.06])
    logit = (
        -2.3 + 1.5 * (previous == "success") + 0.7 * np.isin(job, ["student", "retired"])
        + 0.35 * (channel == "cellular") - 0.18 * campaign + 0.25 * (balance > 2_000)
        + 0.5 * np.isin(date.month, [3, 9, 10, 12])
    )  # fmt: skip
    subscribed = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    duration = np.round(rng.lognormal(5.2, 0.55, rows) * np.where(subscribed == 1, 2.2, 1.0)).astype(int)
    return pd.DataFrame(
        {
            "call_date": date.strftime("%Y-%m-%d"), "age": age.round().astype(int), "job": job, "marital": marital,
            "balance": balance, "channel": channel, "campaign": campaign, "previous_outcome": previous,
            "duration": duration, "subscribed": subscribed,
        }
    )  # fmt: skip


def customers_table(rows: int = 2_000, seed: int = 12) -> pd.DataFrame:
    """A churn extract: one row per customer (int id), no date column, `churned` 0/1 (module docstring)."""
    rng = np.random.default_rng(seed)
    country = rng.choice(["France", "Germany", "Spain"], size=rows, p=[0.5, 0.25, 0.25])
    age = np.clip(rng.normal(39, 10, rows), 18, 90).round().astype(int)
    tenure = rng.integers(0, 11, rows)
    balance = np.round(np.where(rng.random(rows) < 0.35, 0.0, rng.normal(110_000, 30_000, rows)), 2)
    products = rng.choice([1, 2, 3, 4], size=rows, p=[0.5, 0.44, 0.05, 0.01])
    active = (rng.random(rows) < 0.52).astype(int)
    card = (rng.random(rows) < 0.7).astype(int)
    salary = np.round(rng.uniform(10_000, 200_000, rows), 2)
    logit = (
        -1.9 + 0.07 * (age - 39) + 0.8 * (country == "Germany") - 0.9 * active + 1.6 * (products >= 3)
        - 0.5 * (products == 2) + 0.3 * (balance > 0)
    )  # fmt: skip
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "customer_id": np.arange(15_600_001, 15_600_001 + rows), "country": country, "age": age,
            "tenure_years": tenure, "balance": balance, "products": products, "has_card": card,
            "active_member": active, "salary": salary, "churned": churned,
        }
    )  # fmt: skip


def write_examples(folder: Path = EXAMPLES) -> list[Path]:
    """Rewrite the example CSV files (deterministic: the same bytes every time)."""
    out = [folder / "flat_calls.csv", folder / "flat_customers.csv"]
    calls_table().to_csv(out[0], index=False)
    customers_table().to_csv(out[1], index=False)
    return out


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for written in write_examples():
        logging.getLogger(__name__).info("wrote %s", written)
