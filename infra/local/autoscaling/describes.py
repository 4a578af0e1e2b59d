"""Eventually consistent describes (``stale_describes``): DescribeAutoScalingGroups, DescribeAutoScalingInstances
and DescribeInstances answer from a view of the account up to ``describe_staleness`` seconds old.

https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html ("the result of an API command you run
that affects your Amazon EC2 resources might not be immediately visible to all subsequent commands you run");
Auto Scaling's Describe* calls read the same way.

Model: ``observe`` keeps, per instance, the list of (time, view) where the view is what the three Describe calls
can show (group, lifecycle and health state, warm-pool membership; EC2 state, private IP and DNS name, tags,
presence) and appends a view whenever it differs from the last. It runs after every Auto Scaling/EC2 request and
after every state change the engine makes (timers included). A describe with ``stale_describes`` draws a lag L
from ``describe_staleness`` per call and answers from each instance's last view at or before ``now - L``: an
instance launched since is absent, one gone since is still there, states, addresses and tags are as they were.
Writes made straight into moto's backends (not through the API or the engine) are seen from the next observation
on. Groups themselves (existence, hooks, sizes other than DesiredCapacity) are answered current.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState, autoscaling_backends

from infra.local.account import Account, flag, seconds

_OBSERVER = threading.local()  # depth > 0: this thread is a test observing the world (current describes)


@contextlib.contextmanager
def observer() -> Iterator[None]:
    """Describe calls made inside answer the current state (``stale_describes`` does not apply): what a
    test uses to check outcomes, as one reads AWS's settled state after the fact. The calls are logged."""
    _OBSERVER.depth = getattr(_OBSERVER, "depth", 0) + 1
    try:
        yield
    finally:
        _OBSERVER.depth -= 1


class StaleDescribes:
    """The views of one account's instances over time, and the describe answers drawn from them.

    ``warm`` maps a group name to its warm pool's instance states (read at each observation).
    """

    def __init__(self, aws: Account, warm: Mapping[str, list[InstanceState]]) -> None:
        self.aws = aws
        self.warm = warm
        self.history: dict[str, list[tuple[float, dict[str, Any]]]] = {}  # instance id -> [(time, view)]
        self.group_history: dict[str, list[tuple[float, int | None]]] = {}  # group name -> [(time, desired)]

    def observe(self) -> None:
        """Record the account as the describes would show it now (a new entry only where a view changed)."""
        if not flag(self.aws, "stale_describes"):
            return
        now = self.aws.clock.now()
        views = self._instance_views()
        backend = autoscaling_backends[self.aws.account][self.aws.region]
        for group in list(backend.autoscaling_groups.values()):
            self._remember(self.group_history.setdefault(group.name, []), now, group.desired_capacity)
            members = [(s, False) for s in group.instance_states] + [(s, True) for s in self.warm.get(group.name, [])]
            for state, warm in members:
                view = views.get(state.instance.id)
                if view is not None:
                    view.update(
                        group=group.name,
                        state=state,
                        lifecycle=state.lifecycle_state,
                        health=state.health_status,
                        warm=warm,
                    )
        for iid in set(self.history) | set(views):
            view = views.get(iid, {"gone": True})
            self._remember(self.history.setdefault(iid, []), now, view)

    def _instance_views(self) -> dict[str, dict[str, Any]]:
        """EC2's side of each instance's view: state, addresses as DescribeInstances shows them, tags."""
        from moto.ec2.models import ec2_backends

        views: dict[str, dict[str, Any]] = {}
        ec2 = ec2_backends[self.aws.account][self.aws.region]
        tags = ec2.tags  # resource id -> {key: value}: what ``inst.get_tags()`` filters out of every tag of the
        # account on each call (a scan of the whole account per instance, per observation)
        for reservation in list(ec2.reservations.values()):
            for inst in list(reservation.instances):
                views[inst.id] = {
                    "instance": inst,
                    "reservation": reservation,
                    "ec2_state": (inst._state.name, inst._state.code),
                    "ip": inst.private_ip,  # None once unaddressed (addressing.unaddress)
                    "dns": inst.private_dns_name if inst.private_ip else "",
                    "tags": tuple(sorted(tags.get(inst.id, {}).items())),
                    "group": None,
                }
        return views

    def _remember(self, entries: list[tuple[float, Any]], now: float, value: Any) -> None:
        def key(v: Any) -> Any:
            return (
                {k: x for k, x in v.items() if k not in ("instance", "reservation", "state")}
                if isinstance(v, dict)
                else v
            )

        if entries and key(entries[-1][1]) == key(value):
            return
        if entries and entries[-1][0] == now:
            entries[-1] = (now, value)
        else:
            entries.append((now, value))
        # Keep what a lag can still reach (the last entry before the horizon included).
        spec = getattr(self.aws, "describe_staleness", (0.0, 2.0))
        horizon = now - (max(spec) if isinstance(spec, tuple) else float(spec)) - 1.0
        while len(entries) > 2 and entries[1][0] <= horizon:
            entries.pop(0)

    def stale_time(self) -> float | None:
        """The moment this describe answers as of (``now - lag``), or None for a current answer
        (always current inside ``observer()``: a test looking at the world, not a client)."""
        if not flag(self.aws, "stale_describes") or getattr(_OBSERVER, "depth", 0):
            return None
        self.observe()
        return self.aws.clock.now() - seconds(self.aws, "describe_staleness", (0.0, 2.0))

    @staticmethod
    def at(entries: list[tuple[float, Any]], when: float) -> Any:
        found = None
        for t, value in entries:
            if t > when:
                break
            found = value
        return found

    def views_at(self, when: float) -> dict[str, dict[str, Any]]:
        out = {}
        for iid, entries in self.history.items():
            view = self.at(entries, when)
            if view is not None and not view.get("gone"):
                out[iid] = view
        return out

    def groups(self, groups: list[FakeAutoScalingGroup], when: float) -> list[Any]:
        """DescribeAutoScalingGroups as of ``when``: members and DesiredCapacity of then, the rest current."""
        views = self.views_at(when)
        out = []
        for group in groups:
            members = [
                _Proxy(v["state"], lifecycle_state=v["lifecycle"], health_status=v["health"])
                for v in views.values()
                if v.get("group") == group.name and not v.get("warm")
            ]
            desired = self.at(self.group_history.get(group.name, []), when)
            out.append(
                _Proxy(
                    group,
                    instances=members,
                    instance_states=members,
                    desired_capacity=group.desired_capacity if desired is None else desired,
                )
            )
        return out

    def instance_states(self, instance_ids: list[str], when: float) -> list[Any]:
        """DescribeAutoScalingInstances as of ``when`` (warm-pool members included)."""
        return [
            _Proxy(v["state"], lifecycle_state=v["lifecycle"], health_status=v["health"])
            for iid, v in self.views_at(when).items()
            if v.get("group") and (not instance_ids or iid in instance_ids)
        ]

    def reservations(self, instance_ids: list[str], filters: Any, when: float) -> list[Any]:
        """DescribeInstances' reservations as of ``when``, filtered as EC2 filters them."""
        from moto.ec2.exceptions import InvalidInstanceIdError
        from moto.ec2.utils import filter_reservations

        views = self.views_at(when)
        if instance_ids:
            missing = [i for i in instance_ids if i not in views]
            if missing:
                raise InvalidInstanceIdError(missing[0])
        by_reservation: dict[int, tuple[Any, list[Any]]] = {}
        for iid, view in views.items():
            if instance_ids and iid not in instance_ids:
                continue
            name, code = view["ec2_state"]
            tags = [{"key": k, "value": v, "resource_id": iid, "resource_type": "instance"} for k, v in view["tags"]]
            proxy = _InstanceView(view["instance"], name, code, view["ip"], view["dns"], tags)
            reservation = view["reservation"]
            by_reservation.setdefault(id(reservation), (reservation, []))[1].append(proxy)
        reservations = []
        for reservation, instances in by_reservation.values():
            copied = copy.copy(reservation)
            copied.instances = instances
            reservations.append(copied)
        if filters:
            reservations = filter_reservations(reservations, filters)
        return reservations


class _Proxy:
    """An object that reads like ``target`` except for the given attributes (moto serializes by attribute)."""

    def __init__(self, target: Any, **overrides: Any) -> None:
        self.__dict__["_target"] = target
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_target"], name)


class _InstanceView(_Proxy):
    """An EC2 instance as it was: state, addresses and tags of an older view (filters read them too)."""

    def __init__(
        self, instance: Any, name: str, code: int, ip: str | None, dns: str, tags: list[dict[str, str]]
    ) -> None:
        state = SimpleNamespace(name=name, code=code)
        super().__init__(
            instance,
            _state=state,
            instance_state=state,
            state=name,
            state_code=code,
            private_ip=ip,
            private_ip_address=ip,
            private_dns_name=dns,
            tag_set=tags,
            tag_list=tags,
        )
        if ip is None:
            self.__dict__["network_interfaces"] = []

    def get_tags(self) -> list[dict[str, str]]:
        return self.__dict__["tag_set"]
