"""The hostile corpus through the parser: each case becomes the error, IGNORE or event it must."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from hook_handler.events import Invocation, Kind, LifecycleEvent, Parsed, parse_invocation
from hook_handler.exceptions import EventError


def _load_corpus_module():
    # tests/ is not a package; load the loader by path so any pytest import mode finds it.
    path = Path(__file__).resolve().parents[1] / "reliability" / "corpus.py"
    spec = importlib.util.spec_from_file_location("reliability_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus_module()
CASES = corpus.load_corpus()


def _check(parsed: Parsed, expectation: str, expected_field: str | None, name: str) -> None:
    if expectation == "error":
        assert isinstance(parsed.error, EventError), f"{name}: expected an EventError, got {parsed.event}"
        assert parsed.event is None
        if expected_field is None:
            return
        assert parsed.error.field is not None and parsed.error.field.endswith(expected_field), (
            f"{name}: error names field {parsed.error.field!r}, expected …{expected_field}: {parsed.error}"
        )
        assert expected_field in str(parsed.error)
        return
    assert parsed.error is None, f"{name}: unexpected error {parsed.error}"
    assert isinstance(parsed.event, LifecycleEvent)
    if expectation == "ignore":
        assert parsed.event.kind is Kind.IGNORE
    elif expectation == "ok":
        assert parsed.event.kind in (Kind.JOIN, Kind.LEAVE, Kind.PASS)
        assert parsed.event.account in (None, corpus.OWN_ACCOUNT)
        assert parsed.event.region in (None, corpus.OWN_REGION)
    else:  # reject-later: well-formed; the coordinator must refuse it
        assert parsed.event.kind not in (Kind.IGNORE,)


def test_corpus_is_big_enough_and_covers_every_refusal():
    assert len(CASES) >= 45
    files = list(corpus.CORPUS_DIR.glob("*.json"))
    assert len(files) - 1 >= 45  # minus the manifest
    refusals = {c.refusal for c in CASES if c.refusal} | {r.refusal for c in CASES for r in c.records if r.refusal}
    assert refusals == set(corpus.REFUSALS)
    assert {c.expectation for c in CASES} == set(corpus.EXPECTATIONS)


def test_every_corpus_file_is_listed_in_the_manifest():
    listed = {f"{c.name}.json" for c in CASES if not c.name.startswith("gen-")}
    on_disk = {p.name for p in corpus.CORPUS_DIR.glob("*.json")} - {"manifest.json"}
    assert listed == on_disk


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_case_parses_as_expected(case):
    invocation = parse_invocation(case.raw)  # never raises: that is part of the check

    assert isinstance(invocation, Invocation)
    for parsed in invocation.records:
        assert (parsed.event is None) != (parsed.error is None)
    if case.expectation == "batch":
        assert invocation.batch is True
        assert len(invocation.records) == len(case.records)
        for i, (parsed, expected) in enumerate(zip(invocation.records, case.records, strict=True)):
            _check(parsed, expected.expectation, expected.expected_field, f"{case.name}[{i}]")
        return
    assert len(invocation.records) == 1
    _check(invocation.records[0], case.expectation, case.expected_field, case.name)


@pytest.mark.parametrize("case", [c for c in CASES if c.refusal], ids=lambda c: c.name)
def test_reject_later_cases_carry_what_the_coordinator_needs_to_refuse_them(case):
    event = parse_invocation(case.raw).records[0].event

    if case.refusal == "wrong-account":
        assert event.account == "999999999999"
    elif case.refusal == "wrong-region":
        assert event.region == "eu-west-1"
    elif case.refusal == "group-not-served":
        assert event.group == corpus.UNSERVED_GROUP
    elif case.refusal == "instance-not-in-group":
        assert (event.group, event.instance_id) == (corpus.SERVED_GROUP, corpus.UNKNOWN_INSTANCE)
    elif case.refusal == "token-of-other-action":
        assert (event.instance_id, event.token) == (corpus.PENDING_INSTANCE, corpus.OTHER_TOKEN)
    elif case.refusal == "foreign-instance":
        assert (event.group, event.instance_id) == (corpus.SERVED_GROUP, corpus.FOREIGN_INSTANCE)


def test_batch_failures_keep_their_sqs_message_ids():
    mixed = next(c for c in CASES if c.name == "sqs-batch-mixed-good-and-bad")
    invocation = parse_invocation(mixed.raw)

    ids = [p.item_id for p in invocation.records]
    assert ids == [r["messageId"] for r in mixed.raw["Records"]]


def test_substitution_reaches_json_inside_bodies():
    case = next(c for c in CASES if c.name == "sqs-token-of-other-action")
    raw = case.substituted({corpus.PENDING_INSTANCE: "i-0123456789abcdef0"})

    assert parse_invocation(raw).records[0].event.instance_id == "i-0123456789abcdef0"
