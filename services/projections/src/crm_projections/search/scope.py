"""Record-level sharing on aggregates: which facts a caller's grant covers (ADR 0011 scopes)."""

from __future__ import annotations

from dataclasses import dataclass

from crm_http.policy import Grant

from crm_projections.search.queries import Sql

_REACH = {"own": 0, "team": 1, "department": 2, "any": 3}


@dataclass(frozen=True)
class RecordScope:
    """The records a caller may aggregate: their own (owner = subject) or their team's as well.

    Deals, and tickets once assigned, carry an owner and a team but no department, so a department
    scope reaches what a team scope reaches; a fact without an owner (an order not linked to a deal)
    is nobody's, and only an ``any`` scope covers it.
    """

    scope: str
    subject: str
    team: str | None

    @classmethod
    def of(cls, *grants: Grant) -> RecordScope | None:
        """The narrowest scope of the grants, or None when every one of them is unrestricted."""
        scope = min((g.scope for g in grants), key=lambda s: _REACH[s])
        if scope == "any":
            return None
        actor = grants[0].actor
        return cls(scope, actor.subject, actor.team)

    def sql(self, owner: str, team: str, sql: Sql) -> str:
        """A condition on an owner and a team column: the record is the caller's (or their team's)."""
        mine = f"{owner} = {sql.arg(self.subject)}"
        if self.scope == "own" or self.team is None:
            return mine
        return f"({mine} OR {team} = {sql.arg(self.team)})"
