"""A small HTTP client for the decision service (standard library only): for the demo, notebooks and smoke tests.

    client = DecisionClient("http://127.0.0.1:3000", api_key=None)
    decision = client.recommend(customer_id=42, channel="app", context={"event": "airport_checkin"})
    client.event(customer_id=42, event_type="airport_checkin", location_type="airport")
    client.feedback(decision["decision_id"], "accepted", action_id=decision["actions"][0]["action_id"])

Errors become `DecisionServiceError` with the HTTP status and the service's message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from nextbest.errors import NextbestError

API_PREFIX = "/v1"


class DecisionServiceError(NextbestError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class DecisionClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any] | None, method: str = "POST") -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + API_PREFIX + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise DecisionServiceError(exc.code, exc.read().decode(errors="replace")) from None

    def recommend(
        self,
        customer_id: int | str,
        channel: str,
        context: dict[str, Any] | None = None,
        max_actions: int = 3,
        ts: datetime | None = None,
    ) -> dict[str, Any]:
        """`ts` (simulated decision time) only for a service started with serving.simulated_time."""
        body: dict[str, Any] = {"customer_id": customer_id, "channel": channel, "max_actions": max_actions}
        if context:
            body["context"] = context
        if ts is not None:
            body["ts"] = ts.isoformat()
        return self._post("/recommend", body)

    def event(self, customer_id: int | str, event_type: str, **fields: Any) -> dict[str, Any]:
        return self._post("/events", {"customer_id": customer_id, "event_type": event_type, **fields})

    def feedback(
        self, decision_id: str, outcome: str, action_id: str | None = None, ts: datetime | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"decision_id": decision_id, "outcome": outcome}
        if action_id:
            body["action_id"] = action_id
        if ts is not None:
            body["ts"] = ts.isoformat()
        return self._post("/feedback", body)

    def reload(self) -> dict[str, Any]:
        return self._post("/admin/reload", {})

    def status(self) -> dict[str, Any]:
        return self._post("/status", None, method="GET")
