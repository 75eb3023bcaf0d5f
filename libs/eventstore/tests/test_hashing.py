from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from crm_eventstore.hashing import canonical_bytes, canonical_time, event_hash
from hypothesis import given
from hypothesis import strategies as st


def _envelope(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": UUID("01a20a20-c76a-7908-b6f4-39f7528fbd98"),
        "type": "contacts.CustomerRegistered",
        "schema_version": 1,
        "service": "contacts",
        "stream_id": "customer-1",
        "version": 1,
        "customer_id": UUID("01a20a20-c767-7fa6-a5ce-99cdcdc1eaae"),
        "occurred_at": datetime(2026, 4, 1, 9, 0, tzinfo=UTC),
        "recorded_at": datetime(2026, 4, 1, 9, 0, 0, 123456, tzinfo=UTC),
        "actor": {"subject": "u1", "role": "sales", "team": None, "department": None},
        "correlation_id": UUID("01a20a20-c768-7392-8438-f05eebfa0873"),
        "causation_id": None,
        "traceparent": None,
        "payload": {"name": "enc:v1:abc", "kind": "company"},
        "prev_hash": None,
    }
    base.update(overrides)
    return base


def test_the_same_instant_in_another_time_zone_hashes_the_same() -> None:
    jst = timezone(timedelta(hours=9))
    a = _envelope()
    b = _envelope(occurred_at=datetime(2026, 4, 1, 18, 0, tzinfo=jst))
    assert event_hash(a) == event_hash(b)


def test_any_change_to_the_payload_changes_the_hash() -> None:
    assert event_hash(_envelope()) != event_hash(_envelope(payload={"name": "enc:v1:abd", "kind": "company"}))


def test_the_previous_hash_is_part_of_the_hash() -> None:
    assert event_hash(_envelope()) != event_hash(_envelope(prev_hash="00" * 32))


def test_floats_are_refused_because_their_spelling_is_not_stable() -> None:
    with pytest.raises(TypeError):
        event_hash(_envelope(payload={"amount": 1.1}))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_time(datetime(2026, 1, 1))  # noqa: DTZ001


def test_members_outside_the_hashed_set_do_not_matter() -> None:
    assert canonical_bytes(_envelope()) == canonical_bytes({**_envelope(), "hash": "x", "position": 9})


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(), st.integers(), st.booleans(), st.none()), max_size=6))
def test_key_order_never_changes_the_hash(payload: dict[str, object]) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert event_hash(_envelope(payload=payload)) == event_hash(_envelope(payload=reordered))


def test_decimal_strings_keep_their_exact_spelling() -> None:
    a = event_hash(_envelope(payload={"amount": str(Decimal("1.10"))}))
    b = event_hash(_envelope(payload={"amount": "1.1"}))
    assert a != b
