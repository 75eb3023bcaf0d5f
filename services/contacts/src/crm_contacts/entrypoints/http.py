"""HTTP API of the contacts service (port 8001): one endpoint per command, plus reads."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from crm_eventstore.errors import IdempotencyKeyReused, WrongExpectedVersion
from crm_eventstore.http_commands import command_context, expected_version, idempotency_claim
from crm_eventstore.ids import new_id
from crm_eventstore.store import AppendResult, StoredResponse
from crm_http.access_log import AccessLog, access_audit_router, returned_fields
from crm_http.auth import TokenVerifier, actor_dependency
from crm_http.limits import ApiLimits, install_api_limits
from crm_http.policy import Grant, Ownership, Policy, default_policy, document_permissions, permission
from crm_http.probes import install_probes
from crm_http.problems import Problem, conflict, install_problem_handlers, not_found, problem_type, unprocessable
from fastapi import Body, Depends, FastAPI, File, Form, Header, Query, Request, Response, UploadFile
from pydantic import BaseModel

from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.imports import ImportFileError, import_customers
from crm_contacts.domain.commands import (
    AddContactPerson,
    ChangeAddress,
    ChangeContactPersonDetails,
    ChangeContactPersonTitle,
    ChangeDecisionRole,
    ChangeEmail,
    ChangeInterests,
    ChangePhone,
    ChangeProfile,
    ChangeRank,
    ChangeTags,
    ContactPersonLeaves,
    EraseCustomer,
    JoinCampaign,
    MergeCustomer,
    MoveContactPerson,
    RecordConsent,
    RegisterCustomer,
    RenameCustomer,
    SetPaymentTerms,
    UnmergeCustomer,
)
from crm_contacts.domain.customer import (
    Command,
    Customer,
    CustomerWasErased,
    CustomerWasMerged,
    DomainError,
    ForPerson,
    decide,
    fold,
    stream_id,
)


class Accepted(BaseModel):
    """The customer's id and stream version after a command."""

    id: UUID
    version: int


class Candidates(Protocol):
    """Duplicate detection, as the HTTP layer needs it."""

    async def candidates_for(self, customer: Customer, min_score: float = 0.8, limit: int = 10) -> list[Any]:
        """Likely duplicates of a customer."""
        ...

    async def duplicates(self, min_score: float = 0.8, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Candidate pairs, best first."""
        ...


#: Members of a customer's view that hold personal data (recorded in the access log when returned).
PERSONAL_VIEW_FIELDS = (
    "name",
    "name_kana",
    "email",
    "phone",
    "address",
    "representative",
    "birth_date",
    "gender",
    "occupation",
    "contacts",
)
#: Largest CSV accepted by POST /imports (100,000 rows are about 25 MiB).
MAX_IMPORT_BYTES = 64 * 1024 * 1024


def _import_mapping(text: str | None) -> dict[str, str | None] | None:
    if text is None or not text.strip():
        return None
    try:
        mapping = json.loads(text)
    except ValueError:
        raise unprocessable("mapping", "must be a JSON object of CSV header → field name (or null)") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
        raise unprocessable("mapping", "must be a JSON object of CSV header → field name (or null)")
    return mapping


def _domain_problem(error: DomainError) -> Problem:
    if isinstance(error, CustomerWasErased):
        return Problem(410, "Gone", str(error), type=problem_type("customer-erased"))
    if isinstance(error, CustomerWasMerged):
        survivor = error.extra.get("survivor_id")
        return Problem(
            409,
            "Conflict",
            str(error),
            type=problem_type("customer-merged"),
            extra={"survivor_id": survivor, "survivor": f"/customers/{survivor}"},
        )
    if error.status == 404:
        return not_found(str(error))
    if error.status == 409:
        return conflict(str(error))
    return unprocessable(error.field or "body", str(error))


def customer_view(state: Customer) -> dict[str, Any]:
    """The write-side state of a customer as JSON."""
    return {
        "id": str(state.id),
        "kind": state.kind,
        **state.profile,
        "external_id": state.external_id,
        "tags": sorted(state.tags),
        "interests": sorted(state.interests),
        "campaigns": list(state.campaigns),
        "consents": [
            {"channel": ch, "purpose": pu, "granted": c.granted, "source": c.source, "at": c.at.isoformat()}
            for (ch, pu), c in sorted(state.consents.items())
        ],
        "contacts": [p.as_dict() for p in state.persons.values()],
        "merged_into": str(state.merged_into) if state.merged_into else None,
        "merged": [str(a) for a in state.merges],
        "version": state.version,
    }


def create_app(
    commands: CustomerCommands | None,
    verifier: TokenVerifier,
    lifespan: Any = None,
    directory: Candidates | None = None,
    policy: Policy | None = None,
) -> FastAPI:
    """The contacts FastAPI app; `commands` may be bound later via app.state.commands."""
    app = FastAPI(
        title="CRM contacts service",
        version="1.0.0",
        description=(
            "Customer master commands. Every request needs a bearer JWT. `If-Match` carries the expected "
            "version (a stale one gets 409 with `current_version`); `Idempotency-Key` makes retries safe."
        ),
        lifespan=lifespan,
    )
    app.state.commands = commands
    app.state.directory = directory
    install_problem_handlers(app)

    async def database_ready() -> None:
        await app.state.commands.store.pool.fetchval("SELECT 1")

    install_probes(app, "contacts", {"database": database_ready})
    install_api_limits(app, verifier, ApiLimits.from_environ(body_allowances={"/imports": MAX_IMPORT_BYTES + 2**20}))
    current_actor = actor_dependency(verifier)

    def access_log(request: Request | None = None) -> AccessLog:
        log: AccessLog | None = getattr(app.state, "access_log", None)
        if log is None:
            log = AccessLog(app.state.commands.store.pool, "contacts")
            app.state.access_log = log
        return log

    IfMatch = Annotated[str | None, Header(alias="If-Match")]  # noqa: N806
    IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]  # noqa: N806
    rules = policy if policy is not None else default_policy()
    app.include_router(
        access_audit_router(current_actor, access_log=access_log),
        dependencies=[Depends(permission(rules, current_actor, "audit.read_access_log"))],
    )
    MayRegister = Annotated[Grant, Depends(permission(rules, current_actor, "customer.register"))]  # noqa: N806
    MayRead = Annotated[Grant, Depends(permission(rules, current_actor, "customer.read"))]  # noqa: N806
    MayFindDuplicates = Annotated[Grant, Depends(permission(rules, current_actor, "customer.find_duplicates"))]  # noqa: N806
    MayImport = Annotated[Grant, Depends(permission(rules, current_actor, "customer.import"))]  # noqa: N806
    MayAddPerson = Annotated[Grant, Depends(permission(rules, current_actor, "contact_person.add"))]  # noqa: N806
    # Crypto-shredding cannot be undone: the shipped policy grants it to admin only.
    MayErase = Annotated[Grant, Depends(permission(rules, current_actor, "personal_data.erase"))]  # noqa: N806

    async def ownership(customer_id: UUID) -> Ownership | None:
        # The customer master is shared (every shipped scope is "any") and has no owner field; the
        # actor who registered the customer stands in as its owner for a policy that narrows a scope.
        service: CustomerCommands = app.state.commands
        envelopes = await service.store.read_stream(stream_id(customer_id))
        if not envelopes:
            return None
        first = envelopes[0].actor
        return Ownership(owner=first.subject, team=first.team, department=first.department)

    async def in_scope(grant: Grant, customer_id: UUID) -> Ownership | None:
        """The customer's ownership; a customer outside the caller's scope is the same 404 as a missing one."""
        if grant.unrestricted:
            return None
        owned = await ownership(customer_id)
        if not grant.covers(owned):
            raise not_found(f"customer {customer_id} does not exist")
        return owned

    async def run(
        customer_id: UUID,
        command: Command | MergeCustomer | UnmergeCustomer,
        body: BaseModel,
        grant: Grant,
        request: Request,
        response: Response,
        if_match: str | None,
        idempotency_key: str | None,
        status: int = 200,
        extra: dict[str, Any] | None = None,
        *,
        existing: bool = True,
    ) -> dict[str, Any]:
        service: CustomerCommands = app.state.commands
        actor = grant.actor
        if existing:
            await in_scope(grant, customer_id)
        claim = idempotency_claim(actor, idempotency_key, request, body.model_dump(mode="json"))
        computed: dict[str, Any] = dict(extra or {})

        def respond(result: AppendResult) -> StoredResponse:
            return StoredResponse(status, {"id": str(customer_id), "version": result.version, **computed})

        try:
            if isinstance(command, MergeCustomer | UnmergeCustomer):
                outcome = await service.merge(
                    customer_id,
                    command,
                    command_context(actor, request),
                    expected_version=expected_version(if_match, "customer"),
                    idempotency=claim,
                    respond=respond,
                )
            else:
                outcome = await service.execute(
                    customer_id,
                    command,
                    command_context(actor, request),
                    expected_version=expected_version(if_match, "customer"),
                    idempotency=claim,
                    respond=respond,
                )
        except DomainError as error:
            raise _domain_problem(error) from None
        except IdempotencyKeyReused as error:
            raise unprocessable("Idempotency-Key", str(error)) from None
        stored = outcome.result.replayed
        if stored is None:
            stored = respond(outcome.result)
        else:
            response.headers["Idempotent-Replayed"] = "true"
        response.status_code = stored.status_code
        response.headers["ETag"] = f'"{stored.body["version"]}"'
        return stored.body

    @app.exception_handler(WrongExpectedVersion)
    async def _stale(request: Request, exc: WrongExpectedVersion) -> Response:
        return conflict(str(exc), current_version=exc.current).to_response()

    @app.post("/customers", status_code=201)
    async def register_customer(
        body: RegisterCustomer,
        request: Request,
        response: Response,
        grant: MayRegister,
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Register a company or a person; emits contacts.CustomerRegistered; lists possible duplicates."""
        customer_id = new_id()
        found: list[Any] = []
        finder: Candidates | None = app.state.directory
        if finder is not None:
            # Candidates are looked up for the customer as it will be once registered; a replayed
            # request answers the candidates stored with its first response.
            try:
                preview = fold(customer_id, decide(body, Customer(id=customer_id), datetime.now(UTC)))
            except DomainError as error:
                raise _domain_problem(error) from None
            found = [_jsonable(c) for c in await finder.candidates_for(preview)]
        extras = {"possible_duplicates": found}
        result = await run(
            customer_id, body, body, grant, request, response, None, idempotency_key, 201, extras, existing=False
        )
        response.headers["Location"] = f"/customers/{result['id']}"
        return result

    @app.get("/customers/{customer_id}")
    async def get_customer(customer_id: UUID, request: Request, response: Response, grant: MayRead) -> dict[str, Any]:
        """Current write-side state of a customer, with its version as ETag (merged ids stay resolvable).

        Fields the caller's role may not see (docs/adr/0011) are absent from the answer."""
        service: CustomerCommands = app.state.commands
        owned = await in_scope(grant, customer_id)
        state = await service.load(customer_id)
        if not state.registered:
            raise not_found(f"customer {customer_id} does not exist")
        if state.erased:
            raise _domain_problem(CustomerWasErased(f"customer {customer_id} was erased"))
        response.headers["ETag"] = f'"{state.version}"'
        view = customer_view(state)
        visible = grant.visible(view, ownership=owned, consents=view["consents"])
        await access_log().record(grant.actor, customer_id, returned_fields(visible, PERSONAL_VIEW_FIELDS), request)
        return visible

    @app.post("/customers/{customer_id}/erase", response_model=Accepted)
    async def erase_customer(
        customer_id: UUID,
        request: Request,
        response: Response,
        grant: MayErase,
        body: Annotated[EraseCustomer | None, Body()] = None,
        if_match: IfMatch = None,
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Erase the customer's personal data (admin only): CustomerErased, directory entry deleted, data key
        destroyed. Events stay with their personal fields unreadable for good; duplicates merged into it go too."""
        actor = grant.actor
        command = body or EraseCustomer()
        service: CustomerCommands = app.state.commands
        claim = idempotency_claim(actor, idempotency_key, request, command.model_dump(mode="json"))

        def respond(result: AppendResult) -> StoredResponse:
            return StoredResponse(200, {"id": str(customer_id), "version": result.version})

        try:
            result, _ = await service.erase(
                customer_id,
                command,
                command_context(actor, request),
                expected_version=expected_version(if_match, "customer"),
                idempotency=claim,
                respond=respond,
            )
        except DomainError as error:
            raise _domain_problem(error) from None
        except IdempotencyKeyReused as error:
            raise unprocessable("Idempotency-Key", str(error)) from None
        stored = result.replayed
        if stored is None:
            stored = respond(result)
        else:
            response.headers["Idempotent-Replayed"] = "true"
        response.status_code = stored.status_code
        response.headers["ETag"] = f'"{stored.body["version"]}"'
        return stored.body

    @app.get("/duplicates")
    async def list_duplicates(
        grant: MayFindDuplicates,
        min_score: Annotated[float, Query(ge=0, le=1)] = 0.8,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Candidate duplicate pairs (名寄せ), highest score first, with the reasons they match."""
        finder: Candidates | None = app.state.directory
        if finder is None:
            return {"items": [], "next_cursor": None}
        try:
            return await finder.duplicates(min_score=min_score, limit=limit, cursor=cursor)
        except ValueError:
            raise unprocessable("cursor", "cursor is not valid") from None

    @app.post("/imports")
    async def import_customers_file(
        request: Request,
        grant: MayImport,
        file: Annotated[UploadFile, File(description="CSV: UTF-8 (with or without BOM) or Shift_JIS/CP932")],
        mapping: Annotated[
            str | None, Form(description="JSON object: CSV header → field (null skips the column)")
        ] = None,
        encoding: Annotated[
            str | None, Form(description="Input encoding (default: UTF-8 if valid, else CP932)")
        ] = None,
        kind: Annotated[
            Literal["company", "person"] | None, Form(description="Kind of rows without a 種別/kind value")
        ] = None,
    ) -> dict[str, Any]:
        """Import customers from CSV: counts, and each invalid row's errors; posting it again adds nothing."""
        columns = _import_mapping(mapping)
        data = await file.read(MAX_IMPORT_BYTES + 1)
        if len(data) > MAX_IMPORT_BYTES:
            raise Problem(413, "Content Too Large", f"the file is larger than {MAX_IMPORT_BYTES // 2**20} MiB")
        try:
            report = await import_customers(
                app.state.commands,
                data,
                command_context(grant.actor, request),
                mapping=columns,
                encoding=encoding,
                default_kind=kind,
            )
        except ImportFileError as error:
            raise unprocessable("file", str(error)) from None
        return report.as_dict()

    def command_endpoint(path: str, model: type[BaseModel], summary: str, name: str) -> None:
        Allowed = Annotated[Grant, Depends(permission(rules, current_actor, name))]  # noqa: N806

        async def endpoint(
            customer_id: UUID,
            body: model,  # type: ignore[valid-type]
            request: Request,
            response: Response,
            grant: Allowed,
            if_match: IfMatch = None,
            idempotency_key: IdemKey = None,
        ) -> dict[str, Any]:
            return await run(customer_id, body, body, grant, request, response, if_match, idempotency_key)

        endpoint.__doc__ = summary
        app.post(path, response_model=Accepted, name=path.rsplit("/", 1)[-1], summary=summary)(endpoint)

    command_endpoint("/customers/{customer_id}/rename", RenameCustomer, "Rename (CustomerRenamed)", "customer.rename")
    command_endpoint(
        "/customers/{customer_id}/address",
        ChangeAddress,
        "Change address (CustomerAddressChanged)",
        "customer.change_address",
    )
    command_endpoint(
        "/customers/{customer_id}/phone", ChangePhone, "Change phone (CustomerPhoneChanged)", "customer.change_phone"
    )
    command_endpoint(
        "/customers/{customer_id}/email", ChangeEmail, "Change e-mail (CustomerEmailChanged)", "customer.change_email"
    )
    command_endpoint(
        "/customers/{customer_id}/profile",
        ChangeProfile,
        "Change profile fields (one specific event per field)",
        "customer.change_profile",
    )
    command_endpoint(
        "/customers/{customer_id}/rank", ChangeRank, "Change rank (CustomerRankChanged)", "customer.change_rank"
    )
    command_endpoint(
        "/customers/{customer_id}/tags", ChangeTags, "Add/remove tags (CustomerTagged/Untagged)", "customer.change_tags"
    )
    command_endpoint(
        "/customers/{customer_id}/interests",
        ChangeInterests,
        "Add/remove interests (MarketingInterestAdded/Removed)",
        "customer.change_interests",
    )
    command_endpoint(
        "/customers/{customer_id}/campaigns", JoinCampaign, "Join a campaign (CampaignJoined)", "customer.join_campaign"
    )
    command_endpoint(
        "/customers/{customer_id}/consents",
        RecordConsent,
        "Grant or withdraw consent (ConsentGranted/Withdrawn)",
        "customer.record_consent",
    )
    command_endpoint(
        "/customers/{customer_id}/payment-terms",
        SetPaymentTerms,
        "Set payment terms (PaymentTermsSet)",
        "customer.set_payment_terms",
    )
    command_endpoint(
        "/customers/{customer_id}/merge",
        MergeCustomer,
        "Merge a duplicate into this customer (CustomersMerged)",
        "customer.merge",
    )
    command_endpoint(
        "/customers/{customer_id}/unmerge", UnmergeCustomer, "Reverse a merge (CustomersUnmerged)", "customer.unmerge"
    )

    @app.post("/customers/{customer_id}/contacts", status_code=201)
    async def add_contact_person(
        customer_id: UUID,
        body: AddContactPerson,
        request: Request,
        response: Response,
        grant: MayAddPerson,
        if_match: IfMatch = None,
        idempotency_key: IdemKey = None,
    ) -> dict[str, Any]:
        """Add a contact person at a company (ContactPersonAdded); answers the new person_id."""
        command = body if body.person_id is not None else body.model_copy(update={"person_id": new_id()})

        extras = {"person_id": str(command.person_id)}
        return await run(customer_id, command, body, grant, request, response, if_match, idempotency_key, 201, extras)

    def person_endpoint(suffix: str, model: type[BaseModel], summary: str, name: str) -> None:
        Allowed = Annotated[Grant, Depends(permission(rules, current_actor, name))]  # noqa: N806

        async def endpoint(
            customer_id: UUID,
            person_id: UUID,
            body: model,  # type: ignore[valid-type]
            request: Request,
            response: Response,
            grant: Allowed,
            if_match: IfMatch = None,
            idempotency_key: IdemKey = None,
        ) -> dict[str, Any]:
            command = ForPerson(person_id, body)
            return await run(customer_id, command, body, grant, request, response, if_match, idempotency_key)

        endpoint.__doc__ = summary
        app.post(
            f"/customers/{{customer_id}}/contacts/{{person_id}}/{suffix}",
            response_model=Accepted,
            name=f"contact-{suffix}",
            summary=summary,
        )(endpoint)

    person_endpoint(
        "title", ChangeContactPersonTitle, "Change title (ContactPersonTitleChanged)", "contact_person.change_title"
    )
    person_endpoint("move", MoveContactPerson, "Move department (ContactPersonMovedDepartment)", "contact_person.move")
    person_endpoint(
        "contact-details",
        ChangeContactPersonDetails,
        "Change e-mail/phone (ContactPersonContactDetailsChanged)",
        "contact_person.change_details",
    )
    person_endpoint(
        "decision-role",
        ChangeDecisionRole,
        "Change decision role (ContactPersonDecisionRoleChanged)",
        "contact_person.change_decision_role",
    )
    person_endpoint("leave", ContactPersonLeaves, "Left the company (ContactPersonLeftCompany)", "contact_person.leave")

    document_permissions(app, rules)
    return app


def _jsonable(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return json.loads(json.dumps(asdict(value), default=str))
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def build_app() -> FastAPI:
    """The app as run by uvicorn: settings from the environment, pools opened on startup."""
    from crm_contacts.bootstrap import bootstrap

    return bootstrap()
