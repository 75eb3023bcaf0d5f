"""Authorization: one declarative policy (policy.yaml) of permissions, record-level sharing and field visibility.

Every service asks the same three questions of one ``Policy``:

* may this role use this command or query at all?  ``Policy.authorize`` / the ``permission``
  dependency: no → 403 problem+json naming the permission;
* is this record within the role's scope (own, team, department, any)?  ``Grant.covers``: no →
  the caller gets the same 404 as for a record that does not exist;
* which fields of the response may the caller see?  ``Grant.visible`` / ``Policy.visible``: the
  others are removed, so they are absent, not null.

See docs/adr/0011-authorization-policy.md.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.routing import BaseRoute

from crm_http.auth import Actor
from crm_http.problems import PROBLEM_CONTENT_TYPE, Problem, problem_type

Role = Literal["sales", "marketing", "support", "accounting", "manager", "admin", "auditor", "integration"]
Resource = Literal[
    "customer",
    "contact_person",
    "deal",
    "activity",
    "contract",
    "order",
    "invoice",
    "payment",
    "budget",
    "ticket",
    "timeline",
    "customer360",
    "segment",
    "pivot",
    "pipeline",
    "audit",
    "personal_data",
]
#: Which records of a resource a role may use a permission on, narrowest first.
Scope = Literal["own", "team", "department", "any"]
#: How the caller relates to one record, closest first.
Relationship = Literal["own", "team", "department", "other"]
ConsentChannel = Literal["email", "phone", "post", "any"]

ROLES: tuple[str, ...] = get_args(Role)
RESOURCES: tuple[str, ...] = get_args(Resource)

_SCOPE_REACH: dict[str, int] = {"own": 0, "team": 1, "department": 2, "any": 3}
_FIELD_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\[\])?(\.[a-z_][a-z0-9_]*(\[\])?)*$")
_ACTION = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConsentRule(_Strict):
    """Roles that see a field only when the customer consented to marketing on a channel."""

    roles: frozenset[Role]
    channel: ConsentChannel


class FieldRule(_Strict):
    """Who sees one restricted field; everyone else gets the document without it."""

    roles: frozenset[Role] = frozenset()
    owner: bool = Field(default=False, description="The record's owner sees it, whatever the role")
    consent: ConsentRule | None = None
    when: dict[str, frozenset[str]] = Field(
        default_factory=dict, description="Applies only to documents whose top-level field has one of these values"
    )


class ResourcePolicy(_Strict):
    """The permissions of one resource, each a map of role to scope, and its restricted fields."""

    description: str
    permissions: dict[str, dict[Role, Scope]]
    fields: dict[str, tuple[FieldRule, ...]] = Field(
        default_factory=dict, description="Restricted field → its rule, or a list of rules that must all allow it"
    )

    @field_validator("permissions")
    @classmethod
    def _actions_are_names(cls, value: dict[str, dict[Role, Scope]]) -> dict[str, dict[Role, Scope]]:
        for action in value:
            if not _ACTION.match(action):
                raise ValueError(f"permission name {action!r} is not lower_snake_case")
        return value

    @field_validator("fields", mode="before")
    @classmethod
    def _one_rule_is_a_list_of_one(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {path: rule if isinstance(rule, list | tuple) else [rule] for path, rule in value.items()}
        return value

    @field_validator("fields")
    @classmethod
    def _paths_are_well_formed(cls, value: dict[str, tuple[FieldRule, ...]]) -> dict[str, tuple[FieldRule, ...]]:
        for path, rules in value.items():
            if not _FIELD_PATH.match(path) or path.endswith("[]"):
                raise ValueError(f"field path {path!r} is not of the form a.b or a[].b")
            if not rules:
                raise ValueError(f"field path {path!r} has no rule")
        return value


class PolicyDocument(_Strict):
    """The whole policy file: roles, what counts as marketing consent, and every resource."""

    version: Literal[1]
    roles: dict[Role, str]
    marketing_purposes: frozenset[str]
    resources: dict[Resource, ResourcePolicy]

    @model_validator(mode="after")
    def _complete(self) -> Self:
        missing_roles = sorted(set(ROLES) - set(self.roles))
        if missing_roles:
            raise ValueError(f"roles not described: {missing_roles}")
        missing = sorted(set(RESOURCES) - set(self.resources))
        if missing:
            raise ValueError(f"resources without policy: {missing}")
        return self


@dataclass(frozen=True, slots=True)
class Ownership:
    """Whom a record belongs to, for record-level sharing: owner subject, team, department."""

    owner: str | None = None
    team: str | None = None
    department: str | None = None


def relationship(actor: Actor, ownership: Ownership | None) -> Relationship:
    """The caller's closest relationship to a record (a record without ownership is ``other``)."""
    if ownership is None:
        return "other"
    if ownership.owner is not None and ownership.owner == actor.subject:
        return "own"
    if ownership.team is not None and ownership.team == actor.team:
        return "team"
    if ownership.department is not None and ownership.department == actor.department:
        return "department"
    return "other"


def scope_covers(scope: Scope, related: Relationship) -> bool:
    """Whether a scope reaches a record the caller has this relationship to."""
    if scope == "any":
        return True
    return related != "other" and _SCOPE_REACH[related] <= _SCOPE_REACH[scope]


def forbidden(actor: Actor, permission: str) -> Problem:
    """403 problem+json naming the permission the caller's role lacks."""
    return Problem(
        403,
        "Forbidden",
        f"The role '{actor.role}' lacks the permission '{permission}'.",
        type=problem_type("forbidden"),
        extra={"permission": permission},
    )


class Policy:
    """The loaded, validated policy: permission checks, record scopes and field filtering."""

    def __init__(self, document: PolicyDocument) -> None:
        self.document = document
        self._scopes: dict[str, dict[str, Scope]] = {
            f"{resource}.{action}": dict(roles.items())
            for resource, rules in document.resources.items()
            for action, roles in rules.permissions.items()
        }

    @classmethod
    def from_yaml(cls, text: str) -> Policy:
        """A policy from YAML text; raises pydantic.ValidationError if it is not a valid policy."""
        return cls(PolicyDocument.model_validate(yaml.safe_load(text)))

    @classmethod
    def from_file(cls, path: Path) -> Policy:
        """A policy from a YAML file."""
        return cls.from_yaml(path.read_text(encoding="utf-8"))

    @property
    def permissions(self) -> list[str]:
        """Every permission name, ``resource.action``."""
        return list(self._scopes)

    def known(self, permission: str) -> str:
        """``permission`` itself; raises KeyError if the policy does not define it (a programming error)."""
        if permission not in self._scopes:
            raise KeyError(f"the policy defines no permission {permission!r}")
        return permission

    def scope(self, role: str, permission: str) -> Scope | None:
        """The scope in which ``role`` may use ``permission``, or None if it may not."""
        return self._scopes[self.known(permission)].get(role)

    def allows(self, actor: Actor, permission: str, ownership: Ownership | None = None) -> bool:
        """Whether the caller may use ``permission`` (on the record of ``ownership``, if given)."""
        scope = self.scope(actor.role, permission)
        if scope is None:
            return False
        return ownership is None or scope_covers(scope, relationship(actor, ownership))

    def authorize(self, actor: Actor, permission: str) -> Grant:
        """The caller's grant of ``permission``; raises the 403 problem if their role lacks it."""
        scope = self.scope(actor.role, permission)
        if scope is None:
            raise forbidden(actor, permission)
        return Grant(self, actor, permission, scope)

    def consented_channels(self, consents: Iterable[Mapping[str, Any]]) -> frozenset[str]:
        """Channels with a granted consent for a marketing purpose; items have channel, purpose, granted."""
        purposes = self.document.marketing_purposes
        return frozenset(
            str(item["channel"])
            for item in consents
            if item.get("granted") is True and item.get("purpose") in purposes and item.get("channel")
        )

    def hidden_fields(
        self,
        resource: str,
        document: Mapping[str, Any],
        actor: Actor,
        *,
        ownership: Ownership | None = None,
        consents: Iterable[Mapping[str, Any]] = (),
    ) -> list[str]:
        """Paths of the restricted fields of ``resource`` that the caller may not see in ``document``."""
        rules = self.document.resources[_resource(resource)].fields
        related = relationship(actor, ownership)
        channels = self.consented_channels(consents)
        return [
            path
            for path, alternatives in rules.items()
            if not all(_sees(rule, actor.role, related, channels, document) for rule in alternatives)
        ]

    def visible(
        self,
        resource: str,
        document: Mapping[str, Any],
        actor: Actor,
        *,
        ownership: Ownership | None = None,
        consents: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A copy of ``document`` without the fields the caller may not see (absent, not null).

        ``ownership`` is the record's, for owner-only fields; ``consents`` are the customer's
        (``{"channel", "purpose", "granted"}`` items), for fields marketing sees only with consent.
        """
        hidden = self.hidden_fields(resource, document, actor, ownership=ownership, consents=consents)
        result = copy.deepcopy(dict(document))
        for path in hidden:
            _remove(result, path.split("."))
        return result


@dataclass(frozen=True, slots=True)
class Grant:
    """A caller's permission to use one command or query, in a scope; checks records and filters views."""

    policy: Policy
    actor: Actor
    permission: str
    scope: Scope

    @property
    def resource(self) -> str:
        """The resource the permission is about (``ticket`` of ``ticket.read``)."""
        return self.permission.split(".", 1)[0]

    @property
    def unrestricted(self) -> bool:
        """True when the scope is ``any``: no need to look up whom a record belongs to."""
        return self.scope == "any"

    def covers(self, ownership: Ownership | None) -> bool:
        """Whether the record with this ownership is within the caller's scope."""
        return scope_covers(self.scope, relationship(self.actor, ownership))

    def visible(
        self,
        document: Mapping[str, Any],
        *,
        ownership: Ownership | None = None,
        consents: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """``document`` filtered by the field rules of this grant's resource for its caller."""
        return self.policy.visible(self.resource, document, self.actor, ownership=ownership, consents=consents)


def permission(
    policy: Policy,
    current_actor: Callable[..., Awaitable[Actor]],
    name: str,
) -> Callable[[Actor], Awaitable[Grant]]:
    """FastAPI dependency: the caller's Grant of permission ``name``, or 403 problem+json (401 without a token).

    ``current_actor`` is the app's ``actor_dependency(verifier)``; FastAPI resolves it once per request.
    """
    policy.known(name)

    async def grant(actor: Actor) -> Grant:
        return policy.authorize(actor, name)

    # The signature is set explicitly because string annotations (PEP 563) could not name the
    # closure's current_actor when FastAPI resolves them.
    grant.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "actor", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[Actor, Depends(current_actor)]
            )
        ],
        return_annotation=Grant,
    )
    grant.__name__ = f"permission_{name.replace('.', '_')}"
    grant.crm_permission = name  # type: ignore[attr-defined]
    return grant


def document_permissions(app: FastAPI, policy: Policy) -> None:
    """Write into ``app``'s OpenAPI which permission each endpoint needs, who has it, and its 403.

    Call it after the routes are added and before the schema is first served.
    """
    for route, inherited in _api_routes(app.routes, frozenset()):
        names = sorted(_permissions_of(route.dependant) | inherited)
        if not names:
            continue
        holders = "; ".join(
            f"`{name}`: "
            + ", ".join(f"{role} ({scope})" for role in ROLES if (scope := policy.scope(role, name)) is not None)
            for name in names
        )
        note = f"Permission {holders or 'none'} (docs/adr/0011)."
        route.description = f"{route.description}\n\n{note}" if route.description else note
        route.responses.setdefault(
            403,
            {
                "description": f"The caller's role lacks the permission {', '.join(names)} (problem+json).",
                "content": {PROBLEM_CONTENT_TYPE: {}},
            },
        )


def _api_routes(routes: Sequence[BaseRoute], inherited: frozenset[str]) -> Iterator[tuple[APIRoute, frozenset[str]]]:
    """Every APIRoute with the permissions of the include_router(dependencies=...) above it; FastAPI (>= 0.16x)
    keeps included routers as lazily expanded wrappers, so their routes are not in ``app.routes``."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route, inherited
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            from_include = {
                name
                for dependency in getattr(context, "dependencies", None) or ()
                if isinstance(name := getattr(dependency.dependency, "crm_permission", None), str)
            }
            yield from _api_routes(included.routes, inherited | from_include)


def _permissions_of(dependant: Dependant) -> set[str]:
    found = set()
    for dependency in dependant.dependencies:
        name = getattr(dependency.call, "crm_permission", None)
        if isinstance(name, str):
            found.add(name)
        found |= _permissions_of(dependency)
    return found


@functools.cache
def default_policy() -> Policy:
    """The policy shipped with crm_http (policy.yaml beside this module), loaded once."""
    text = resources.files("crm_http").joinpath("policy.yaml").read_text(encoding="utf-8")
    return Policy.from_yaml(text)


def _resource(name: str) -> Resource:
    if name not in RESOURCES:
        raise KeyError(f"the policy has no resource {name!r}")
    return name  # type: ignore[return-value]


def _sees(
    rule: FieldRule, role: str, related: Relationship, channels: frozenset[str], document: Mapping[str, Any]
) -> bool:
    for key, values in rule.when.items():
        # A document that lacks the condition's field is treated as matching: fail closed.
        if key in document and str(document[key]) not in values:
            return True
    if role in rule.roles:
        return True
    if rule.owner and related == "own":
        return True
    if rule.consent is not None and role in rule.consent.roles:
        return bool(channels) if rule.consent.channel == "any" else rule.consent.channel in channels
    return False


def _remove(node: Any, path: list[str]) -> None:
    if not isinstance(node, dict) or not path:
        return
    head, rest = path[0], path[1:]
    name = head.removesuffix("[]")
    if not rest:
        node.pop(name, None)
        return
    child = node.get(name)
    # A list is searched element by element even where the path lacks "[]": fail closed.
    for item in child if isinstance(child, list) else [child]:
        _remove(item, rest)
