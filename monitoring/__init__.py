"""Monitoring: Evidently reports on served traffic and the drift verdict that triggers retraining.

Modules: `drift` (the verdict policy: methods, thresholds, rules; pure), `reports` (Evidently report builders,
pure over DataFrames), `store` (Evidently workspace + standalone HTML/JSON), `sources` (the champion's training
rows and the served window from the decision log), `pipeline` (one `nextbest monitor` run). Retraining on a verdict
and the closed loop are jobs (`nextbest.jobs`). Nothing is imported or computed at package import time.
"""
