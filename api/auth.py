"""Who is asking, and may they: `Authorization: Bearer TOKEN` looked up in the principals the API follows
(access/principals.py), then the route's one permission checked against the token's role (access/roles.py).

- no token, a malformed header, or a token that is unknown or revoked: 401 with a reason and
  `WWW-Authenticate: Bearer`, the same answer for all three so a caller learns nothing about other tokens;
- a token whose role lacks the permission: 403 naming the permission and the roles that hold it;
- before the API has read the principals to their end: 503 (a token revoked in the part not read yet must not
  get in), so a client retries instead of dropping a good token;
- `--insecure` (loopback only, checked at start): no token is asked for; every caller is the principal
  "insecure" with the admin role, and every audit record says so.

A request let in gets an `Access` (api/audit_gate.py) naming its caller, action and parameters, kept on the request
so the error handlers can record a failure once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from access.caller import Caller
from access.roles import PERMISSIONS, Permission, allowed
from api.audit_gate import Access
from api.context import ApiContext, app_context
from api.errors import Forbidden, NotReady, Unauthorized

__all__ = ["INSECURE_PRINCIPAL", "admit", "client_of", "request_access", "request_id_of", "require"]

INSECURE_PRINCIPAL = "insecure"
MAX_REQUEST_ID_CHARS = 64

bearer = HTTPBearer(auto_error=False, description="A token from `wxarchive tokens create`: `Authorization: Bearer wxa_…`")


def admit(context: ApiContext, credentials: HTTPAuthorizationCredentials | None, client: str, request_id: str,
          permission: Permission) -> Caller:
    """The caller of a request that may do what `permission` names; Unauthorized, Forbidden or NotReady if not."""
    if context.principals is None:
        return Caller(INSECURE_PRINCIPAL, "", "admin", client, request_id)
    if not context.principals.ready:
        raise NotReady("the API has not read its tokens yet (the principals topic); retry in a few seconds")
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("no bearer token: send `Authorization: Bearer TOKEN` with a token from "
                           "`wxarchive tokens create`")
    principal = context.principals.lookup(credentials.credentials)
    if principal is None:
        raise Unauthorized("the bearer token is unknown or revoked")
    if not allowed(principal.role, permission):
        roles = ", ".join(sorted(role.value for role in PERMISSIONS[permission]))
        raise Forbidden(f"the role {principal.role!r} may not do {permission.value!r} (roles that may: {roles})")
    return Caller.of(principal, client, request_id)


def request_id_of(request: Request) -> str:
    """This request's id, made once and kept on the request (the answer's X-Request-Id, the audit record's)."""
    known: str | None = getattr(request.state, "request_id", None)
    if known is None:
        known = uuid.uuid4().hex
        request.state.request_id = known
    return known


def client_of(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else ""


def request_access(request: Request) -> Access | None:
    """The Access of a request that was let in, if it was."""
    access: Access | None = getattr(request.state, "access", None)
    return access


def require(permission: Permission, action: str) -> Callable[..., Awaitable[Access]]:
    """A route's dependency: let in only callers whose role holds `permission`; their audit record will name
    `action` and the request's path and query parameters."""

    async def dependency(request: Request, context: Annotated[ApiContext, Depends(app_context)],
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Access:
        caller = admit(context, credentials, client_of(request), request_id_of(request), permission)
        parameters = {**request.path_params, **request.query_params}
        access = Access(caller, context.audit, action, parameters)
        request.state.access = access
        return access

    return dependency
