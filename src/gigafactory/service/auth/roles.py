"""Roles and what they allow, in one table that every permission check reads.

A membership gives a role on one tenant and everything below it (a viewer on a
partner sees all its programmes and projects). ``admin`` is facility-wide.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    PARTNER_MANAGER = "partner-manager"
    PROJECT_LEAD = "project-lead"
    MEMBER = "member"
    VIEWER = "viewer"


class Cap(StrEnum):
    """Capabilities on a project (or on a partner/programme, for its subtree)."""

    READ = "read"  # see jobs, logs, usage, budget
    SUBMIT = "submit"  # submit jobs
    MANAGE_OWN = "manage-own"  # cancel/hold/release/requeue one's own jobs
    MANAGE_ANY = "manage-any"  # ... anyone's jobs in the project
    MANAGE_MEMBERS = "manage-members"  # add/remove memberships below
    MANAGE_BUDGET = "manage-budget"  # set project budgets below


CAPS: dict[Role, frozenset[Cap]] = {
    Role.ADMIN: frozenset(Cap),
    Role.PARTNER_MANAGER: frozenset(
        {Cap.READ, Cap.MANAGE_OWN, Cap.MANAGE_ANY, Cap.MANAGE_MEMBERS, Cap.MANAGE_BUDGET}
    ),
    Role.PROJECT_LEAD: frozenset(
        {Cap.READ, Cap.SUBMIT, Cap.MANAGE_OWN, Cap.MANAGE_ANY, Cap.MANAGE_MEMBERS}
    ),
    Role.MEMBER: frozenset({Cap.READ, Cap.SUBMIT, Cap.MANAGE_OWN}),
    Role.VIEWER: frozenset({Cap.READ}),
}

#: Which tenant kinds a role may be granted on (``None`` = facility-wide).
SCOPES: dict[Role, frozenset[str | None]] = {
    Role.ADMIN: frozenset({None}),
    Role.PARTNER_MANAGER: frozenset({"partner"}),
    Role.PROJECT_LEAD: frozenset({"programme", "project"}),
    Role.MEMBER: frozenset({"project"}),
    Role.VIEWER: frozenset({None, "partner", "programme", "project"}),
}

#: Roles that a holder of a role may grant to others inside its own scope.
GRANTS: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset(Role),
    Role.PARTNER_MANAGER: frozenset({Role.PROJECT_LEAD, Role.MEMBER, Role.VIEWER}),
    Role.PROJECT_LEAD: frozenset({Role.MEMBER, Role.VIEWER}),
    Role.MEMBER: frozenset(),
    Role.VIEWER: frozenset(),
}
