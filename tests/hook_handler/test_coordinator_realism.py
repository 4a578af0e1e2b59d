"""The coordinator on the emulator's AWS-realism options (issue 11), with etcd membership on the model.

Each test switches on what AWS does and the kinder emulator did not: the health check running the
terminate hook on an instance killed at EC2 level (its addresses already gone), transitional lifecycle
states, eventually consistent describes, Standby's own states. Outcomes asserted on etcd, Route 53
and Auto Scaling as in ``test_coordinator_membership``.
"""

from __future__ import annotations

import pytest
from test_coordinator_membership import LAUNCH, TERMINATE, grow, make_world

from infra.local import LocalAWS
from infra.local.clock import SimClock

REALISM = {
    "health_check_replacement": True,
    "terminated_addresses": True,
    "transitional_states": True,
    "stale_describes": True,
    "standby_states": True,
}


def realistic(**overrides) -> LocalAWS:
    return LocalAWS(clock=SimClock(), propagation=(5.0, 15.0), **{**REALISM, **overrides})


@pytest.mark.parametrize("membership", [True, False])
def test_a_dead_instances_terminate_hook_drops_it_and_completes_after_insync(membership):
    """Issue 11: an instance killed at EC2 level goes through the terminate hook once the health check
    finds it, its private IP and DNS name already gone. The coordinator answered "already-done: instance
    is gone" and completed nothing: the hook waited out its timeout and the record kept a dead target."""
    with realistic(stale_describes=False) as aws:
        world = make_world(aws, settings={} if membership else {"etcd_membership": "false"})
        grow(world, 3)
        victim = sorted(world.in_service())[0]
        target = world.stack.private_dns([victim])[victim]
        killed_at = aws.clock.now()
        aws.kill_instance(victim)
        aws.clock.advance(200)  # health check (10-30 s), the hook, the pass; no reconcile
        (action,) = [a for a in world.actions(TERMINATE) if a.instance_id == victim]
        assert action.ended_by == "complete" and action.result == "CONTINUE"
        assert target not in world.stack.targets()
        # The change that dropped it (after it died; maybe before its hook began, the record is then already
        # right) was INSYNC when the termination completed.
        srv = (world.stack.srv_name, "SRV")
        listing = [i for i, c in enumerate(aws.route53_changes) if target in str(c.records_after.get(srv))]
        dropped = aws.route53_changes[listing[-1] + 1]
        assert target not in str(dropped.records_after.get(srv))
        assert dropped.submitted_at >= killed_at
        assert action.ended_at >= dropped.insync_at
        aws.clock.advance(300)
        if membership:
            world.assert_in_step()  # the dead member is gone, the replacement joined
            assert victim not in world.member_names()
        assert len(world.in_service()) == 3


def test_transitional_states_and_stale_describes_lose_no_member_and_no_action():
    with realistic() as aws:
        world = make_world(aws)
        grow(world, 3, 400)
        world.assert_in_step()
        grow(world, 5, 900)
        world.assert_in_step()
        grow(world, 3, 600)
        world.assert_in_step()
        for _ in range(2):
            world.reconcile()
            aws.clock.advance(130)
        world.assert_in_step()
        ended = {a.ended_by for a in aws.lifecycle_actions}
        assert "timeout" not in ended, [(a.instance_id, a.transition, a.ended_by) for a in aws.lifecycle_actions]


def test_standbys_own_states_change_neither_member_list_nor_record():
    """EnteringStandby → Standby → (ExitStandby) Pending → InService, no hooks (AWS runs none)."""
    with realistic(stale_describes=False) as aws:
        world = make_world(aws)
        grow(world, 3)
        changes, history = len(aws.route53_changes), len(world.model.history)
        iid = sorted(world.in_service())[0]
        asg = aws.client("autoscaling")
        asg.enter_standby(
            InstanceIds=[iid], AutoScalingGroupName=world.stack.group, ShouldDecrementDesiredCapacity=True
        )
        world.reconcile()
        aws.clock.advance(130)
        asg.exit_standby(InstanceIds=[iid], AutoScalingGroupName=world.stack.group)
        world.reconcile()  # lands while the instance is Pending on its way back
        aws.clock.advance(130)
        assert len(aws.route53_changes) == changes and len(world.model.history) == history
        world.assert_in_step()
        assert not [a for a in aws.lifecycle_actions if a.instance_id == iid and a.transition == LAUNCH][1:]
