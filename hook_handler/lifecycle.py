"""Auto Scaling and EC2 at the edge: observe the served groups, heartbeat, complete, tag.

``observe`` is the source of truth for membership: one ``DescribeAutoScalingGroups`` for the
served groups and one ``DescribeInstances`` for their instances (plus any instance an event
names, so an event about a foreign instance is judged on what the APIs say about it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from hook_handler.clock import Clock
from hook_handler.members import Group, Instance
from hook_handler.plan import Observation
from hook_handler.retry import RetryPolicy, error_code, error_message

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
CHANGE_TAG = "etcd-srv-change"

TARGET_TAG = "etcd-srv-target"  # the SRV target the instance is listed as (its addresses may vanish before it)

_NO_ACTION = "No active Lifecycle Action found"


@dataclass(frozen=True)
class Action:
    """One lifecycle action: the group's hook waiting on one instance (by token when an event gave one)."""

    group: str
    hook: str
    instance_id: str
    transition: str = ""
    token: str = ""

    @property
    def launching(self) -> bool:
        return self.transition == LAUNCHING

    def by_instance(self) -> Action:
        """The same action named by instance id (what a pass without the event's token uses)."""
        return Action(self.group, self.hook, self.instance_id, self.transition, "")


class AutoScaling:
    """The served groups and their instances, through boto3 ``autoscaling`` and ``ec2`` clients."""

    def __init__(
        self,
        autoscaling: Any,
        ec2: Any,
        retry: RetryPolicy,
        clock: Clock,
        *,
        group_names: Iterable[str] = (),
        group_tags: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.retry = retry
        self.clock = clock
        self.group_names = tuple(group_names)
        self.group_tags = tuple(group_tags)
        self._hooks: dict[str, list[dict[str, Any]]] = {}  # group -> its lifecycle hooks

    # -- reads ------------------------------------------------------------------------------
    def observe(self, extra_ids: Iterable[str], deadline: float) -> Observation:
        """Served groups, their instances and the ``extra_ids`` instances, as one ``Observation``."""
        groups: dict[str, Group] = {}
        lifecycle: dict[str, tuple[str, str]] = {}
        for raw in self._groups(deadline):
            ids = []
            for inst in raw.get("Instances", []):
                lifecycle[inst["InstanceId"]] = (raw["AutoScalingGroupName"], inst["LifecycleState"])
                ids.append(inst["InstanceId"])
            if raw.get("WarmPoolConfiguration"):
                # Warm-pool instances are not in the group's Instances: DescribeWarmPool lists them (Warmed:*).
                for inst in self._warm_pool(raw["AutoScalingGroupName"], deadline):
                    lifecycle[inst["InstanceId"]] = (raw["AutoScalingGroupName"], inst["LifecycleState"])
            groups[raw["AutoScalingGroupName"]] = Group(
                raw["AutoScalingGroupName"], int(raw.get("DesiredCapacity", 0)), tuple(sorted(ids))
            )
        wanted = sorted(set(lifecycle) | set(extra_ids))
        ec2_view = self.describe_instances(wanted, deadline) if wanted else {}
        instances: dict[str, Instance] = {}
        for iid in wanted:
            group, state = lifecycle.get(iid, (None, None))
            base = ec2_view.get(iid)
            instances[iid] = Instance(
                instance_id=iid,
                group=group,
                lifecycle_state=state,
                ec2_state=base.ec2_state if base else None,
                private_ip=base.private_ip if base else None,
                private_dns=base.private_dns if base else None,
                tags=base.tags if base else {},
                launch_time=base.launch_time if base else None,
            )
        return Observation(groups=groups, instances=instances, now=self.clock.now())

    def describe_instances(
        self, ids: Iterable[str], deadline: float, *, by: str = "instance-id"
    ) -> dict[str, Instance]:
        """EC2's view of instances, by id (``by="instance-id"``) or another filter (``private-dns-name``).

        A filter, not ``InstanceIds``: an unknown id is simply absent instead of failing the call.
        """
        values = sorted(set(ids))
        found: dict[str, Instance] = {}
        for start in range(0, len(values), 199):
            pages = self._call(
                self.ec2.describe_instances,
                deadline,
                "DescribeInstances",
                Filters=[{"Name": by, "Values": values[start : start + 199]}],
            )
            for reservation in pages.get("Reservations", []):
                for inst in reservation.get("Instances", []):  # every instance of the reservation
                    found[inst["InstanceId"]] = _instance(inst)
        return found

    def hook_name(self, group: str, transition: str, configured: str, deadline: float) -> str | None:
        """Our hook for ``transition`` on ``group``: the configured name, or the only such hook."""
        if configured:
            return configured
        names = [
            h["LifecycleHookName"]
            for h in self._lifecycle_hooks(group, deadline)
            if h["LifecycleTransition"] == transition
        ]
        return names[0] if len(names) == 1 else None

    def hook_names(self, group: str, transition: str, deadline: float, *, expect: str = "") -> list[str]:
        """The group's hooks for ``transition``, by name; described again when ``expect`` is not among those this
        sandbox described (a hook put since)."""
        names = [h["LifecycleHookName"] for h in self._lifecycle_hooks(group, deadline)]
        if expect and expect not in names:
            self._hooks.pop(group, None)
        return [
            h["LifecycleHookName"]
            for h in self._lifecycle_hooks(group, deadline)
            if h["LifecycleTransition"] == transition
        ]

    def heartbeat_timeout(self, group: str, hook: str, deadline: float) -> float | None:
        """The hook's ``HeartbeatTimeout`` in seconds (None: no such hook on the group)."""
        for h in self._lifecycle_hooks(group, deadline):
            if h["LifecycleHookName"] == hook and h.get("HeartbeatTimeout") is not None:
                return float(h["HeartbeatTimeout"])
        return None

    def lifecycle_hooks(self, group: str, deadline: float) -> list[dict[str, Any]]:
        """The group's lifecycle hooks as DescribeLifecycleHooks answers them (described once per sandbox)."""
        return list(self._lifecycle_hooks(group, deadline))

    def _lifecycle_hooks(self, group: str, deadline: float) -> list[dict[str, Any]]:
        """The group's lifecycle hooks, described once per sandbox."""
        if group not in self._hooks:
            out = self._call(
                self.autoscaling.describe_lifecycle_hooks,
                deadline,
                "DescribeLifecycleHooks",
                AutoScalingGroupName=group,
            )
            self._hooks[group] = list(out.get("LifecycleHooks", []))
        return self._hooks[group]

    # -- writes -----------------------------------------------------------------------------
    def complete(self, action: Action, result: str, deadline: float) -> bool:
        """Complete one action (by its token, else by instance id).

        Returns False when no such action is active any more (someone finished it, or it
        expired): for a duplicate delivery that is success, not an error.
        """
        try:
            self._call(
                self.autoscaling.complete_lifecycle_action,
                deadline,
                "CompleteLifecycleAction",
                LifecycleActionResult=result,
                **_action_params(action),
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and _NO_ACTION in error_message(exc):
                return False
            raise

    def heartbeat(self, action: Action, deadline: float) -> bool:
        """Restart the action's heartbeat timeout. False when the action is no longer active."""
        try:
            self._call(
                self.autoscaling.record_lifecycle_action_heartbeat,
                deadline,
                "RecordLifecycleActionHeartbeat",
                **_action_params(action),
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and _NO_ACTION in error_message(exc):
                return False
            raise

    def replace(self, instance_id: str, deadline: float) -> None:
        """Have the group replace an instance: terminated (through its termination hook), desired capacity kept."""
        self._call(
            self.autoscaling.terminate_instance_in_auto_scaling_group,
            deadline,
            "TerminateInstanceInAutoScalingGroup",
            InstanceId=instance_id,
            ShouldDecrementDesiredCapacity=False,
        )

    def tag(self, tags: Mapping[str, Mapping[str, str]], deadline: float) -> None:
        """Set tags per instance, grouped into one ``CreateTags`` call per distinct tag set."""
        by_set: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for iid, kv in tags.items():
            by_set.setdefault(tuple(sorted(kv.items())), []).append(iid)
        for kv, ids in sorted(by_set.items()):
            self._call(
                self.ec2.create_tags,
                deadline,
                "CreateTags",
                Resources=sorted(ids),
                Tags=[{"Key": k, "Value": v} for k, v in kv],
            )

    def untag(self, instance_ids: Iterable[str], keys: Iterable[str], deadline: float) -> None:
        """Delete these tag keys from the instances (one ``DeleteTags``); absent keys are fine."""
        ids, names = sorted(set(instance_ids)), sorted(set(keys))
        if ids and names:
            self._call(self.ec2.delete_tags, deadline, "DeleteTags", Resources=ids, Tags=[{"Key": k} for k in names])

    # -- internals --------------------------------------------------------------------------
    def _groups(self, deadline: float) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if self.group_names:
            params["AutoScalingGroupNames"] = list(self.group_names)
        else:
            params["Filters"] = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.group_tags if v != "*"] + [
                {"Name": "tag-key", "Values": [k]} for k, v in self.group_tags if v == "*"
            ]
        groups: list[dict[str, Any]] = []
        while True:
            out = self._call(
                self.autoscaling.describe_auto_scaling_groups, deadline, "DescribeAutoScalingGroups", **params
            )
            groups.extend(out.get("AutoScalingGroups", []))
            if not out.get("NextToken"):
                return groups
            params["NextToken"] = out["NextToken"]

    def _warm_pool(self, group: str, deadline: float) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"AutoScalingGroupName": group}
        found: list[dict[str, Any]] = []
        while True:
            out = self._call(self.autoscaling.describe_warm_pool, deadline, "DescribeWarmPool", **params)
            found.extend(out.get("Instances", []))
            if not out.get("NextToken"):
                return found
            params["NextToken"] = out["NextToken"]

    def _call(self, fn: Any, deadline: float, what: str, **kwargs: Any) -> Any:
        return self.retry.call(fn, deadline=deadline, what=what, **kwargs)


def launch_default_warnings(group: str, hooks: Iterable[Mapping[str, Any]], configured: str) -> list[str]:
    """A warning for the coordinator's launch hook on ``group`` (``configured``, or the group's only launching hook)
    when its ``DefaultResult`` is CONTINUE: a launch the coordinator does not answer before the hook times out then
    goes InService unadmitted — no etcd member while the record may list it. A terminating hook's default does not
    matter (CONTINUE and ABANDON both let the termination go on).

    >>> hook = {"LifecycleHookName": "h", "LifecycleTransition": LAUNCHING, "DefaultResult": "CONTINUE"}
    >>> launch_default_warnings("etcd", [hook], "")[0][:60]
    'group etcd: launch hook h has DefaultResult CONTINUE: a laun'
    >>> launch_default_warnings("etcd", [{**hook, "DefaultResult": "ABANDON"}], "h")
    []
    """
    launching = [h for h in hooks if h.get("LifecycleTransition") == LAUNCHING]
    if configured:
        ours = [h for h in launching if h.get("LifecycleHookName") == configured]
    else:
        ours = launching if len(launching) == 1 else []
    return [
        f"group {group}: launch hook {h['LifecycleHookName']} has DefaultResult CONTINUE: a launch the coordinator "
        "does not answer before the hook times out goes InService unadmitted (not an etcd member, while the record "
        "may list it); set its DefaultResult to ABANDON (put-lifecycle-hook, or the group's "
        "LifecycleHookSpecificationList)"
        for h in ours
        if str(h.get("DefaultResult", "ABANDON")).upper() == "CONTINUE"
    ]


def _action_params(action: Action) -> dict[str, str]:
    params = {"AutoScalingGroupName": action.group, "LifecycleHookName": action.hook}
    if action.token:
        params["LifecycleActionToken"] = action.token
    else:
        params["InstanceId"] = action.instance_id
    return params


def _instance(raw: Mapping[str, Any]) -> Instance:
    launch = raw.get("LaunchTime")
    return Instance(
        instance_id=raw["InstanceId"],
        ec2_state=raw.get("State", {}).get("Name"),
        private_ip=raw.get("PrivateIpAddress") or None,
        private_dns=raw.get("PrivateDnsName") or None,
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", []) or []},
        launch_time=launch.timestamp() if isinstance(launch, datetime) else None,
    )
