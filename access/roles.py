"""The roles and what each may do, as one table: permission -> the roles that hold it.

The API declares one permission per route and asks `allowed(role, permission)`; nothing else decides access, so
this table is the whole policy and reads as such (issue 13):

- viewer: conversations (the conversation list, transcripts, one message with its raw callback).
- moderator: moderation hits and the sensitive-word list (read and change).
- compliance: search, export, holds and the audit log, and conversations too: an officer must be able to read
  what was said around a search hit, and a search already shows message text, so withholding transcripts would
  protect nothing.
- analyst: read-only SQL and the views (the schema they query).
- admin: everything, tokens and deletion included.
- scrm: the SCRM back end of seed 003, which reads conversations and keeps the sensitive-word list (doSave): one
  token with exactly what its endpoints need, rather than an admin token or two tokens of other roles. Not in
  issue 13's list of five; added because the SCRM is one of the read side's named callers and "the same tokens"
  would otherwise mean handing it admin. Deletion (delMsgByOwnerId, issue 14) stays admin's.

An unknown role holds nothing (a principal written by a newer version with a role this one does not know is
refused, not guessed at).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["PERMISSIONS", "Permission", "Role", "allowed", "parse_role", "permissions_of"]


class Role(str, Enum):
    VIEWER = "viewer"
    MODERATOR = "moderator"
    COMPLIANCE = "compliance"
    ANALYST = "analyst"
    ADMIN = "admin"
    SCRM = "scrm"


class Permission(str, Enum):
    CONVERSATIONS_READ = "conversations.read"  # conversation list, transcript, one message and its evidence
    MODERATION_READ = "moderation.read"        # moderation hits
    KEYWORDS_READ = "keywords.read"            # the sensitive-word list
    KEYWORDS_WRITE = "keywords.write"          # add or remove a word (the SCRM's doSave)
    SEARCH = "search"                          # compliance search over all messages
    EXPORT = "export"                          # evidence export
    HOLDS_READ = "holds.read"
    HOLDS_WRITE = "holds.write"                # place or lift a legal hold
    AUDIT_READ = "audit.read"                  # the audit log (reading it is audited too)
    SQL_QUERY = "sql.query"                    # read-only SQL
    VIEWS_READ = "views.read"                  # the views and their columns
    TOKENS_READ = "tokens.read"
    TOKENS_WRITE = "tokens.write"              # create and revoke tokens
    DELETE = "delete"                          # delete archived messages (never under a hold)


_V, _M, _C, _A, _S = Role.VIEWER, Role.MODERATOR, Role.COMPLIANCE, Role.ANALYST, Role.SCRM

# admin is added to every row below: it may do everything
PERMISSIONS: dict[Permission, frozenset[Role]] = {permission: frozenset(roles) | {Role.ADMIN} for permission, roles in {
    Permission.CONVERSATIONS_READ: {_V, _C, _S},
    Permission.MODERATION_READ: {_M},
    Permission.KEYWORDS_READ: {_M, _S},
    Permission.KEYWORDS_WRITE: {_M, _S},
    Permission.SEARCH: {_C},
    Permission.EXPORT: {_C},
    Permission.HOLDS_READ: {_C},
    Permission.HOLDS_WRITE: {_C},
    Permission.AUDIT_READ: {_C},
    Permission.SQL_QUERY: {_A},
    Permission.VIEWS_READ: {_A},
    Permission.TOKENS_READ: set(),
    Permission.TOKENS_WRITE: set(),
    Permission.DELETE: set(),
}.items()}


def parse_role(text: str) -> Role | None:
    """The role named `text`, or None for a name that is not one."""
    try:
        return Role(text)
    except ValueError:
        return None


def allowed(role: Role | str, permission: Permission) -> bool:
    """Whether `role` may do what `permission` names; False for an unknown role."""
    known = role if isinstance(role, Role) else parse_role(role)
    return known is not None and known in PERMISSIONS[permission]


def permissions_of(role: Role | str) -> list[Permission]:
    """Everything `role` may do, in the table's order: what `tokens create` and the docs show."""
    return [p for p in Permission if allowed(role, p)]
