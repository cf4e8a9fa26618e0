"""The API's Prometheus metrics, in one registry per app (so two apps in one process, as in the tests, keep apart):
requests by route and status, their latency by route, and the audit trail's own counters (records written, and
failures: each one a request refused with 503).

The route label is the route's template (`/api/v1/accounts/{account}/conversations`), never the path itself, so an
account name or a made-up URL cannot grow the number of series; a path no route matches counts as "unmatched".
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

from access.audit import AuditMetrics

__all__ = ["ApiMetrics", "UNMATCHED"]

disable_created_metrics()  # the *_created series only double every counter on the page

UNMATCHED = "unmatched"
_LATENCY_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("wxarchive_api_requests", "Requests answered, by route template, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("wxarchive_api_request_seconds", "Time from request to answer, by route template.",
                                 ["route"], buckets=_LATENCY_S, registry=self.registry)
        self.audit = AuditMetrics(self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
