"""Monitoring: Evidently reports on served traffic, the drift verdict, and the retraining trigger.

Modules: `drift` (the verdict policy: methods, thresholds, rules; pure), `reports` (Evidently report builders,
pure over DataFrames), `store` (Evidently workspace + standalone HTML/JSON), `sources` (the champion's training
rows and the served window from the decision log), `pipeline` (one `nextbest monitor` run), `retrain` (retrain
and gate on a drift verdict). Nothing is imported or computed at package import time.
"""
