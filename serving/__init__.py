"""Serving: the real-time decision service (BentoML) and everything it is made of.

`policy` (the decision policy, plain Python, configured by `policy.yaml`), `decision_log` (durable decisions,
contacts, events, feedback), `engine` (one decision: online read, models, policy, log; framework-free), `schemas`
(the HTTP models), `auth` (API keys), `service` (the `@bentoml.service`), `runner` (start/stop the real server),
`client` and `demo`. Nothing is imported here, so `import serving.policy` stays cheap.
"""
