"""The generated event contract is up to date and describes what the event store and relays really write."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

import pytest
import yaml
from crm_eventstore.hashing import event_hash
from crm_eventstore.kafka import cloudevent_headers, decode_headers, encode_value
from crm_eventstore.keyring import Keyring
from crm_schemas import generate
from crm_schemas.base import ENVELOPE_MEMBERS, DomainEvent
from crm_schemas.contacts import CustomerRegistered, PostalAddress
from crm_schemas.envelope import ActorRef, EventEnvelope
from crm_schemas.registry import DEADLETTER_TOPIC, EVENT_TYPES, SERVICES, topic_for
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(generate.__file__).resolve().parents[2]
CUSTOMER = UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def contract_copy(tmp_path: Path) -> Path:
    root = tmp_path / "schemas"
    shutil.copytree(ROOT / "json", root / "json")
    for name in ("asyncapi.yaml", "CHANGELOG.md", "README.md"):
        shutil.copy2(ROOT / name, root / name)
    return root


def validator(relative: str) -> Draft202012Validator:
    schema = json.loads((ROOT / relative).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def keyring_with_key(customer_id: UUID) -> Keyring:
    """The real keyring, its cache primed with a data key so no key database is needed."""
    keyring = Keyring(pool=None, master_key=os.urandom(32))  # type: ignore[arg-type]
    keyring._remember(customer_id, AESGCM(AESGCM.generate_key(bit_length=256)))
    return keyring


async def published(event: DomainEvent, keyring: Keyring) -> EventEnvelope:
    """The envelope exactly as PostgresEventStore seals it and the relay publishes it."""
    event_id = uuid4()
    payload = await keyring.encrypt_fields(event.customer_id, event_id, event.to_payload(), event.personal_fields())
    body: dict[str, Any] = {
        "event_id": event_id,
        "type": event.type,
        "schema_version": event.schema_version,
        "service": "contacts",
        "stream_id": f"customer-{event.customer_id}",
        "version": 1,
        "customer_id": event.customer_id,
        "occurred_at": event.occurred_at,
        "recorded_at": NOW,
        "actor": ActorRef(subject="u-1", role="sales", team="east").model_dump(mode="json"),
        "correlation_id": uuid4(),
        "causation_id": None,
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "payload": payload,
        "prev_hash": None,
    }
    return EventEnvelope.model_validate({**body, "hash": event_hash(body)})


def registered() -> CustomerRegistered:
    return CustomerRegistered(
        customer_id=CUSTOMER,
        occurred_at=NOW,
        kind="company",
        name="株式会社サンプル",
        name_kana="カブシキガイシャサンプル",
        email="info@example.co.jp",
        phone=None,
        address=PostalAddress(postal_code="100-0001", prefecture="東京都", city="千代田区", street="千代田1-1"),
        corporate_number="1234567890123",
        capital="10000000",
        fiscal_month=3,
        birth_date=None,
    )


# --- (a) the committed files are current; --check notices every difference ---------------------


def test_committed_contract_is_up_to_date() -> None:
    assert generate.check(ROOT) == []


def test_check_names_an_edited_a_missing_and_an_extra_file(tmp_path: Path) -> None:
    root = contract_copy(tmp_path)
    edited = root / "json/contacts.CustomerRegistered/v1.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace('"kind"', '"sort"'), encoding="utf-8")
    (root / "asyncapi.yaml").unlink()
    (root / "json/contacts.Forgotten").mkdir()
    (root / "json/contacts.Forgotten/v1.json").write_text("{}\n", encoding="utf-8")

    assert sorted(generate.check(root)) == [
        "extra: json/contacts.Forgotten/v1.json",
        "missing: asyncapi.yaml",
        "stale: json/contacts.CustomerRegistered/v1.json",
    ]


def test_check_command_exits_1_and_lists_the_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = contract_copy(tmp_path)
    (root / "README.md").write_text("# edited\n", encoding="utf-8")

    assert generate.main(["--check", "--root", str(root)]) == 1
    assert "stale: README.md" in capsys.readouterr().err
    assert generate.main(["--root", str(root)]) == 0
    assert generate.main(["--check", "--root", str(root)]) == 0


def test_generating_into_an_empty_folder_reproduces_the_committed_files_except_history(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    root.mkdir()
    shutil.copy2(ROOT / "CHANGELOG.md", root / "CHANGELOG.md")

    generate.write(root)

    produced = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert produced == sorted(generate.render(ROOT))
    assert generate.check(root) == []


def test_history_written_above_the_changelog_marker_is_kept(tmp_path: Path) -> None:
    root = contract_copy(tmp_path)
    changelog = root / "CHANGELOG.md"
    head, tail = changelog.read_text(encoding="utf-8").split(generate.CHANGELOG_MARKER)
    changelog.write_text(f"{head}## 1.1.0\n\n- Something added.\n\n{generate.CHANGELOG_MARKER}{tail}", encoding="utf-8")

    assert generate.check(root) == []


def test_generated_part_of_the_changelog_is_checked(tmp_path: Path) -> None:
    root = contract_copy(tmp_path)
    changelog = root / "CHANGELOG.md"
    changelog.write_text(changelog.read_text(encoding="utf-8").replace("| v1 |", "| v9 |", 1), encoding="utf-8")

    assert generate.check(root) == ["stale: CHANGELOG.md"]


class CustomerRegisteredV2(CustomerRegistered):
    """A customer was registered (a hypothetical breaking version 2)."""

    summary_en: ClassVar[str] = ""
    schema_version: Literal[2] = 2  # type: ignore[assignment]


def test_a_new_schema_version_keeps_the_old_schema_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = contract_copy(tmp_path)
    v1 = (root / "json/contacts.CustomerRegistered/v1.json").read_text(encoding="utf-8")
    monkeypatch.setitem(EVENT_TYPES, "contacts.CustomerRegistered", CustomerRegisteredV2)

    generate.write(root)

    assert (root / "json/contacts.CustomerRegistered/v1.json").read_text(encoding="utf-8") == v1
    assert (root / "json/contacts.CustomerRegistered/v2.json").is_file()
    messages = yaml.safe_load((root / "asyncapi.yaml").read_text(encoding="utf-8"))["components"]["messages"]
    assert messages["contacts.CustomerRegistered.v1"]["deprecated"] is True
    assert "deprecated" not in messages["contacts.CustomerRegistered.v2"]
    assert "v1 (superseded)" in (root / "CHANGELOG.md").read_text(encoding="utf-8")
    assert generate.check(root) == []


# --- (b) records built like the event store's validate; broken ones do not ----------------------


async def test_a_published_customer_registered_record_validates_against_its_schema() -> None:
    envelope = await published(registered(), keyring_with_key(CUSTOMER))
    value = json.loads(encode_value(envelope))

    assert value["payload"]["name"].startswith("enc:v1:")
    assert value["payload"]["phone"] is None
    validator("json/contacts.CustomerRegistered/v1.json").validate(value)
    validator(generate.ENVELOPE_FILE).validate(value)


async def test_decrypted_personal_members_match_their_plaintext_schemas() -> None:
    keyring = keyring_with_key(CUSTOMER)
    envelope = await published(registered(), keyring)
    schema = json.loads((ROOT / "json/contacts.CustomerRegistered/v1.json").read_text(encoding="utf-8"))
    members = schema["properties"]["payload"]["properties"]

    plaintext = await keyring.decrypt_fields(CUSTOMER, envelope.event_id, envelope.payload)

    for name in CustomerRegistered.personal_fields():
        if plaintext[name] is not None:
            check = Draft202012Validator({"$defs": schema["$defs"], **members[name]["x-crm-plaintext"]})
            check.validate(plaintext[name])


async def test_plaintext_in_a_personal_member_fails_validation() -> None:
    value = json.loads(encode_value(await published(registered(), keyring_with_key(CUSTOMER))))
    value["payload"]["name"] = "株式会社サンプル"

    errors = list(validator("json/contacts.CustomerRegistered/v1.json").iter_errors(value))

    assert [list(e.absolute_path) for e in errors] == [["payload", "name"]]


@pytest.mark.parametrize(
    "path",
    [("event_id",), ("hash",), ("actor", "role"), ("payload",), ("payload", "kind"), ("payload", "name")],
)
async def test_a_record_missing_a_required_member_fails_validation(path: tuple[str, ...]) -> None:
    value = json.loads(encode_value(await published(registered(), keyring_with_key(CUSTOMER))))
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]

    assert not validator("json/contacts.CustomerRegistered/v1.json").is_valid(value)


async def test_a_record_of_another_type_or_version_fails_validation() -> None:
    value = json.loads(encode_value(await published(registered(), keyring_with_key(CUSTOMER))))
    check = validator("json/contacts.CustomerRegistered/v1.json")

    assert not check.is_valid({**value, "type": "contacts.CustomerRenamed"})
    assert not check.is_valid({**value, "schema_version": 2})


async def test_members_added_later_within_the_version_are_accepted() -> None:
    value = json.loads(encode_value(await published(registered(), keyring_with_key(CUSTOMER))))
    value["payload"]["loyalty_tier"] = "gold"
    value["delivered_via"] = "replay"

    validator("json/contacts.CustomerRegistered/v1.json").validate(value)


async def test_relay_headers_match_the_asyncapi_message_and_point_at_the_schema() -> None:
    envelope = await published(registered(), keyring_with_key(CUSTOMER))
    headers = decode_headers(cloudevent_headers(envelope, "contacts"))
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        "asyncapi.yaml", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    message = "asyncapi.yaml#/components/messages/contacts.CustomerRegistered.v1"
    schema = json.loads((ROOT / "json/contacts.CustomerRegistered/v1.json").read_text(encoding="utf-8"))

    Draft202012Validator({"$ref": f"{message}/headers"}, registry=registry).validate(headers)
    Draft202012Validator({"$ref": f"{message}/bindings/kafka/key"}, registry=registry).validate(str(CUSTOMER))
    assert headers["ce_dataschema"] == schema["$id"]
    assert (ROOT.parent / headers["ce_dataschema"]).is_file()


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_schema_has_its_identity_and_encrypted_personal_members(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    _, version = generate.event_identity(model)
    schema = json.loads((ROOT / generate.schema_file(event_type, version)).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    payload = schema["properties"]["payload"]

    assert schema["properties"]["type"]["const"] == event_type
    assert schema["properties"]["schema_version"]["const"] == version
    assert not ENVELOPE_MEMBERS & set(payload["properties"])
    assert payload["additionalProperties"] is True
    for name, member in payload["properties"].items():
        assert member.get("x-crm-personal", False) == (name in model.personal_fields())
        if name in model.personal_fields():
            assert member["pattern"] == "^enc:v1:[A-Za-z0-9_-]+$"


def _keywords(node: object) -> set[str]:
    if isinstance(node, dict):
        found = set(node)
        for key, value in node.items():
            if key not in ("properties", "$defs"):
                found |= _keywords(value)
            else:
                for member in value.values():
                    found |= _keywords(member)
        return found
    if isinstance(node, list):
        return set().union(*(_keywords(item) for item in node))
    return set()


def test_schemas_stay_within_what_draft_07_asyncapi_tooling_reads_alike() -> None:
    only_2019_or_later = {
        "prefixItems",
        "unevaluatedItems",
        "unevaluatedProperties",
        "dependentRequired",
        "dependentSchemas",
        "$dynamicRef",
        "$dynamicAnchor",
        "$anchor",
        "$recursiveRef",
        "minContains",
        "maxContains",
    }
    for path in (ROOT / "json").rglob("*.json"):
        assert not _keywords(json.loads(path.read_text(encoding="utf-8"))) & only_2019_or_later, path


# --- (c) the AsyncAPI document -------------------------------------------------------------------


def test_asyncapi_document_has_a_channel_per_topic_and_a_message_per_event_type() -> None:
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text(encoding="utf-8"))

    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {*(topic_for(service) for service in SERVICES), DEADLETTER_TOPIC}
    for event_type, model in EVENT_TYPES.items():
        message_id = f"{event_type}.v{generate.event_identity(model)[1]}"
        assert message_id in document["channels"][topic_for(model.service)]["messages"]
        payload_ref = document["components"]["messages"][message_id]["payload"]["$ref"]
        assert (ROOT / payload_ref).is_file()


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text(encoding="utf-8"))

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for item in node for r in refs(item)]
        return []

    for ref in refs(document):
        if ref.startswith("#/"):
            target: Any = document
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
        else:
            assert (ROOT / ref).is_file(), ref
