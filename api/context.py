"""What every route of one API app shares, built once by api/service.py: the archive's readers, the audit trail,
the principals, the word list, the limits and the metrics. Routes reach it through `app_context(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from access.principals import PrincipalStore
from api.audit_gate import AuditWriter
from api.clickhouse import ArchiveReader
from api.keywords import KeywordList
from api.metrics import ApiMetrics
from wxarchive.config import Settings

__all__ = ["ApiContext", "SqlLimits", "app_context"]


@dataclass(frozen=True)
class SqlLimits:
    """The caps on one analyst's query: rows and bytes of the result, seconds it may run."""

    max_rows: int
    max_bytes: int
    timeout_s: float


@dataclass
class ApiContext:
    archive: ArchiveReader          # the API's own queries
    sql: ArchiveReader              # analysts' queries: their own pool, so a slow one does not hold the others up
    sql_limits: SqlLimits
    audit: AuditWriter
    principals: PrincipalStore | None  # None: --insecure, no tokens
    keywords: KeywordList
    raw_topic: str                  # where raw callbacks live, to find one message's evidence in raw_callbacks
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    uins: dict[str, str] = field(default_factory=dict)  # the SCRM's uin -> the archive's wcId
    settings: Settings = field(default_factory=lambda: Settings.load(env={}))  # where tokens are kept (Kafka)

    @property
    def insecure(self) -> bool:
        return self.principals is None

    def account_for(self, uin: str | None, user_name: str | None = None) -> str:
        """The archived account (wcId) the SCRM means: a mapped `uin`; else the account's own wxid (`user_name`,
        where the endpoint has one); else `uin` taken as a wcId. "" when neither is given."""
        if uin and uin in self.uins:
            return self.uins[uin]
        return user_name or uin or ""

    def uin_of(self, account: str) -> str:
        """The SCRM's uin of an account: the mapped one, else the wcId itself."""
        return next((uin for uin, wc_id in self.uins.items() if wc_id == account), account)


def app_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context
