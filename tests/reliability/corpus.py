"""The hostile-input corpus (issue 6, item 3): malformed and adversarial events with what must happen.

Files live in ``tests/reliability/corpus/`` (one payload each, as Lambda would receive it) and
``manifest.json`` says what each must become. Oversized payloads are generated here instead of
being committed. Events use placeholders that a coordinator test maps onto its own world with
``CorpusCase.substituted``:

- the function's own account ``OWN_ACCOUNT`` / region ``OWN_REGION``, served group ``SERVED_GROUP``;
- ``PENDING_INSTANCE`` with a pending launch action whose token is ``PENDING_TOKEN``;
- ``OTHER_TOKEN``: a token of no pending action of that instance;
- ``UNKNOWN_INSTANCE``: exists nowhere; ``FOREIGN_INSTANCE``: a member of ``UNSERVED_GROUP``.

Example::

    for case in load_corpus():
        raw = case.substituted({PENDING_INSTANCE: real_id, PENDING_TOKEN: real_token})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
MANIFEST = CORPUS_DIR / "manifest.json"

OWN_ACCOUNT = "123456789012"
OWN_REGION = "us-east-1"
SERVED_GROUP = "etcd"
UNSERVED_GROUP = "not-served-asg"
PENDING_INSTANCE = "i-0a1b2c3d4e5f60001"
PENDING_TOKEN = "11111111-2222-3333-4444-555555555555"
OTHER_TOKEN = "99999999-8888-7777-6666-555555555555"
UNKNOWN_INSTANCE = "i-0000000000000dead"
FOREIGN_INSTANCE = "i-0f0f0f0f0f0f0f0f0"

EXPECTATIONS = ("error", "ignore", "reject-later", "batch")
RECORD_EXPECTATIONS = ("ok", "error", "ignore", "reject-later")
REFUSALS = (
    "wrong-account",
    "wrong-region",
    "group-not-served",
    "instance-not-in-group",
    "token-of-other-action",
    "foreign-instance",
)
_LIMIT = 256 * 1024


@dataclass(frozen=True)
class RecordExpectation:
    """What one record of a batch must become."""

    expectation: str  # ok | error | ignore | reject-later
    expected_field: str | None = None  # for errors: the EventError's field ends with this
    refusal: str | None = None  # for reject-later: why the coordinator refuses it


@dataclass(frozen=True)
class CorpusCase:
    """One hostile payload and what it must become."""

    name: str
    raw: object
    expectation: str  # error | ignore | reject-later | batch
    expected_field: str | None = None
    refusal: str | None = None
    records: tuple[RecordExpectation, ...] = field(default=())
    why: str = ""

    def substituted(self, mapping: dict[str, str]) -> object:
        """The payload with placeholder strings replaced everywhere, JSON-in-string bodies included.

        >>> case.substituted({PENDING_INSTANCE: "i-0123456789abcdef0"})  # doctest: +SKIP
        """
        text = json.dumps(self.raw)
        for old, new in mapping.items():
            text = text.replace(old, new)
        return json.loads(text)


def load_corpus() -> list[CorpusCase]:
    """Every case: the committed files (in manifest order) followed by the generated ones.

    >>> cases = load_corpus()
    >>> len(cases) >= 45
    True
    """
    manifest = json.loads(MANIFEST.read_text())
    cases = [
        _case(name, entry, json.loads((CORPUS_DIR / name).read_text())) for name, entry in manifest["cases"].items()
    ]
    return cases + generated_cases()


def generated_cases() -> list[CorpusCase]:
    """Cases too large to commit, built on the fly."""
    message = _raw_message()
    padded = dict(message, NotificationMetadata="x" * (_LIMIT + 1))
    # Under 256 Ki characters but over 256 KiB of UTF-8: the limit is in bytes.
    multibyte = dict(message, NotificationMetadata="€" * (_LIMIT // 3 + 10))
    deep = "[" * 100_000 + "]" * 100_000  # 200 KB: under the cap, but deeper than json can recurse
    huge_int = json.dumps(message)[:-1] + ', "RequestId": ' + "9" * 5000 + "}"
    return [
        CorpusCase(
            "gen-sqs-body-over-256kib",
            _sqs(json.dumps(padded)),
            "error",
            "body",
            why="over the SQS message limit: refused before json.loads",
        ),
        CorpusCase(
            "gen-sns-message-over-256kib",
            _sns(json.dumps(padded)),
            "error",
            "Sns.Message",
            why="over the SNS message limit: refused before json.loads",
        ),
        CorpusCase(
            "gen-sqs-body-multibyte-over-256kib",
            _sqs(json.dumps(multibyte, ensure_ascii=False)),
            "error",
            "body",
            why="fewer characters than the cap, more bytes",
        ),
        CorpusCase(
            "gen-sqs-body-deeply-nested-json",
            _sqs(deep),
            "error",
            "body",
            why="nesting that exhausts json's recursion must be an EventError, not a crash",
        ),
        CorpusCase(
            "gen-sqs-body-5000-digit-integer",
            _sqs(huge_int),
            "error",
            "body",
            why="integers beyond Python's str-to-int digit limit",
        ),
        CorpusCase(
            "gen-sqs-batch-1000-records",
            {"Records": [_record(json.dumps(message), i) for i in range(999)] + [_record("{", 999)]},
            "batch",
            records=tuple([RecordExpectation("ok")] * 999 + [RecordExpectation("error", "body")]),
            why="a large batch whose last record is broken",
        ),
    ]


def _case(name: str, entry: dict, raw: object) -> CorpusCase:
    expectation = entry["expect"]
    if expectation not in EXPECTATIONS:
        raise ValueError(f"manifest {name}: expect {expectation!r}; expected one of {EXPECTATIONS}")
    if entry.get("refusal") is not None and entry["refusal"] not in REFUSALS:
        raise ValueError(f"manifest {name}: refusal {entry['refusal']!r}; expected one of {REFUSALS}")
    records = tuple(RecordExpectation(r["expect"], r.get("field"), r.get("refusal")) for r in entry.get("records", ()))
    for r in records:
        if r.expectation not in RECORD_EXPECTATIONS:
            raise ValueError(f"manifest {name}: record expect {r.expectation!r}; expected {RECORD_EXPECTATIONS}")
    return CorpusCase(
        name=name.removesuffix(".json"),
        raw=raw,
        expectation=expectation,
        expected_field=entry.get("field"),
        refusal=entry.get("refusal"),
        records=records,
        why=entry.get("why", ""),
    )


def _raw_message() -> dict:
    return {
        "Origin": "EC2",
        "LifecycleHookName": "etcd-launch",
        "Destination": "AutoScalingGroup",
        "AccountId": OWN_ACCOUNT,
        "RequestId": "a5c7e3a2-9d1f-4a40-8f4e-6c0f1f6c2b10",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "AutoScalingGroupName": SERVED_GROUP,
        "Service": "AWS Auto Scaling",
        "Time": "2021-01-19T00:36:26.533Z",
        "EC2InstanceId": PENDING_INSTANCE,
        "LifecycleActionToken": PENDING_TOKEN,
    }


def _record(body: str, n: int) -> dict:
    return {
        "messageId": f"059f36b4-87a3-44ab-83d2-{n:012d}",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183"},
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{OWN_REGION}:{OWN_ACCOUNT}:etcd-lifecycle",
        "awsRegion": OWN_REGION,
    }


def _sqs(body: str) -> dict:
    return {"Records": [_record(body, 0)]}


def _sns(message: str) -> dict:
    topic = f"arn:aws:sns:{OWN_REGION}:{OWN_ACCOUNT}:etcd-lifecycle"
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic}:21be56ed-a058-49f5-8c98-aedd2564c486",
                "EventSource": "aws:sns",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": topic,
                    "Message": message,
                    "Timestamp": "2021-01-19T00:36:26.600Z",
                },
            }
        ]
    }
