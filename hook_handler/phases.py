"""Each etcd member's life as explicit phases, and the next idempotent step of each: pure functions of the
instance's tags and etcd's live member list (no I/O; ``coordinator.members`` performs the steps).

Modelled on etcd-io/etcd-operator's member controller: a switch on the phase, each phase a short, linear list of
steps checked against live state, the phase written (an instance tag) *before* the step that needs it, so a pass
killed anywhere resumes where it stopped.

  FOUNDING   listed in the founding record → INSYNC → go signal ``new`` → started and healthy → CONTINUE
             (not started within ``member_start_timeout_seconds`` of its go signal → ABANDON)
  JOINING    listed → INSYNC → ``adding`` tag (write before mutate) → ``member add`` (a learner where etcd has
             them) → member id + go signal ``existing`` in one CreateTags → started
  PROMOTING  a started learner → promoted once in sync → healthy voter → CONTINUE
             (not a healthy voter within the start timeout of its add → removed, ABANDON; a started learner that
             answers gets a second timeout to catch up)
  LEAVING    leadership moved off it (best effort) → ``member remove`` once the quorum guard allows (else held,
             see ``HeldBy``) → the record without it → INSYNC → CONTINUE

Every step enum is a ``StrEnum``: its value is the word logs, ``status`` and tests use. Restoring and recovering
members (seeded from a snapshot, replacing a member that lost its data) become phases of their own here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hook_handler.etcd import Member
from hook_handler.members import STATE_TAG, Instance, tag_seconds
from hook_handler.membership import ADDED, ADDING, PHASE_TAG, SINCE_TAG, EtcdView, member_id_of


class JoinAction(StrEnum):
    """The next step of a launch into a running cluster (phases JOINING and PROMOTING)."""

    ADD = "add"
    TAG_ID = "tag-id"
    GO = "go"
    WAIT_START = "wait-start"
    PROMOTE = "promote"
    COMPLETE = "complete"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class JoinStep:
    """The next step for one joining instance."""

    instance_id: str
    step: JoinAction
    member: Member | None
    detail: str = ""


def join_step(
    instance: Instance,
    member: Member | None,
    view: EtcdView,
    *,
    now: float,
    start_timeout: float,
    go_written: bool,
) -> JoinStep:
    """Where a launch into a running cluster stands, from its tags and the live member list.

    >>> join_step(Instance("i-1"), None, EtcdView(()), now=0, start_timeout=300, go_written=False).step
    <JoinAction.ADD: 'add'>
    """
    iid = instance.instance_id
    since = tag_seconds(instance.tags.get(SINCE_TAG))
    if member is None:
        if instance.tags.get(PHASE_TAG) in (ADDING, ADDED) and since is not None and now - since > start_timeout:
            return JoinStep(iid, JoinAction.TIMEOUT, None, f"no member {now - since:.0f}s after its add began")
        return JoinStep(iid, JoinAction.ADD, None, "not a member yet")
    if member_id_of(instance) != member.id:
        return JoinStep(iid, JoinAction.TAG_ID, member, f"member {member.hex_id} not recorded on the instance")
    ready = member.started and not member.learner and member.id in view.healthy
    # A learner that started and answers is progress, not a member that never started: promoting it is the next
    # step even past the start timeout (a pass may have handed off and the retry come late: the started learner
    # was once removed instead of promoted). It gets a second start timeout to catch up, then counts as stuck.
    learner_up = member.started and member.learner and member.id in view.healthy
    limit = start_timeout * (2 if learner_up else 1)
    if not ready and since is not None and now - since > limit:
        state = "unstarted" if not member.started else ("a learner" if member.learner else "unhealthy")
        return JoinStep(iid, JoinAction.TIMEOUT, member, f"still {state} {now - since:.0f}s after member add")
    if not go_written:
        return JoinStep(iid, JoinAction.GO, member, "member added; the instance may start etcd")
    if not member.started:
        return JoinStep(iid, JoinAction.WAIT_START, member, "waiting for etcd to start")
    if member.learner:
        return JoinStep(iid, JoinAction.PROMOTE, member, "learner started; promote once in sync")
    if member.id not in view.healthy:
        return JoinStep(iid, JoinAction.WAIT_START, member, "started, not healthy yet")
    return JoinStep(iid, JoinAction.COMPLETE, member, "healthy voting member")


class FoundAction(StrEnum):
    """The next step of a founding member (phase FOUNDING), once the founding record is INSYNC."""

    GO = "go"
    WAIT_START = "wait-start"
    COMPLETE = "complete"
    ABANDON = "abandon"


@dataclass(frozen=True)
class FoundStep:
    instance_id: str
    step: FoundAction
    detail: str = ""


def found_step(
    instance: Instance, member: Member | None, view: EtcdView | None, *, now: float, start_timeout: float
) -> FoundStep:
    """Where a founding member stands: told ``new`` yet, started and healthy, or out of time.

    >>> found_step(Instance("i-1"), None, None, now=0, start_timeout=300).step
    <FoundAction.GO: 'go'>
    """
    iid = instance.instance_id
    if member is not None and member.started and view is not None and member.id in view.healthy:
        return FoundStep(iid, FoundAction.COMPLETE, "founding member started and healthy")
    since = tag_seconds(instance.tags.get(SINCE_TAG))
    if since is not None and now - since > start_timeout:
        return FoundStep(iid, FoundAction.ABANDON, f"founding member did not start in {start_timeout:g}s")
    if STATE_TAG not in instance.tags:
        return FoundStep(iid, FoundAction.GO, "the go signal (new)")
    return FoundStep(iid, FoundAction.WAIT_START, "founding member has not started and become healthy yet")
