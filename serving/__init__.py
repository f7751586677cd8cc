"""Serving: the real-time decision service (BentoML) and the engine behind it.

`engine` (one decision: online read, models, the floor's policy, the decision log; framework-free), `lifecycle`
(readiness, registry poll, atomic champion swap), `schemas` (the HTTP models), `auth` (API keys), `service` (the
`@bentoml.service`), `runner` (start/stop the real server) and `client` (a small HTTP client). The decision policy
and the decision log live on the floor (`nextbest.policy`, `nextbest.decision_log`); serving never imports training.
"""
