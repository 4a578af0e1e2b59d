"""The one read path: what a decision needs from Auto Scaling, EC2, Route 53 and etcd, read the same way by a
coordinator pass, ``python -m hook_handler status`` and the group's termination policy. Reads only: nothing here
writes a tag, a record, a membership change or a lifecycle action.

``Looker`` keeps what one Lambda sandbox remembers between reads (whether etcd has learners, the client record's
URLs). A ``budget`` (the termination policy's two seconds) makes every etcd read one round with a short bound per
member.

Example:
    >>> # looker = Looker(settings, autoscaling, route53, clock, membership, log=logger)
    >>> # look = looker.look(deadline)   # look.obs, look.view, look.records
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.clock import Clock
from hook_handler.decide import supports_learners, tagged_owners
from hook_handler.etcd import EtcdTlsError, EtcdUnavailable, Member, Membership, MembershipError
from hook_handler.exceptions import DeadlineReached
from hook_handler.identity import ClusterIdentity, Loss, identity_name, lost_for_good, voter_instances
from hook_handler.identity import parse as parse_identity
from hook_handler.lifecycle import TARGET_TAG, AutoScaling
from hook_handler.members import IN_SERVICE_STATES, STATE_TAG, Instance
from hook_handler.membership import MEMBER_ID_TAG, EtcdView, departure, is_instance_id
from hook_handler.plan import Key, Observation, RecordSet, absolute, peer_targets, record_keys, target_of
from hook_handler.route53 import Route53
from hook_handler.settings import Settings, fqdn
from hook_handler.srv import SrvValue

VIEW_READ_SECONDS = 15.0  # how long a look at etcd may take before the pass treats etcd as unreachable
CLIENT_RECORD_SECONDS = 60.0  # how long client URLs read from etcd_client_srv are used before it is read again
CLIENT_RECORD_READ_SECONDS = 5.0


@dataclass(frozen=True)
class Look:
    """One whole look: the APIs' ``obs`` (owners of etcd's members and of record targets added), etcd's ``view``
    (None: DNS-only, no cluster yet, or ``etcd_error``) and the zone's ``records``."""

    obs: Observation
    view: EtcdView | None
    records: Mapping[Key, RecordSet]
    etcd_error: str | None = None
    identity: ClusterIdentity | None = None  # the cluster identity record (``hook_handler.identity``)
    loss: Loss | None = None  # etcd showed no leader and EC2 proves its quorum lost for good


class Looker:
    """Reads for the pass, ``status`` and the termination policy. Clients and clock are passed in."""

    def __init__(
        self,
        settings: Settings,
        asg: AutoScaling,
        route53: Route53 | None,
        clock: Clock,
        membership: Membership | None,
        *,
        log: Any,
        budget: float | None = None,
    ) -> None:
        self.settings = settings
        self.asg = asg
        self.route53 = route53
        self.clock = clock
        self.membership = membership
        self.log = log
        self.budget = budget  # per-member bound of a budgeted look (one round, no version query)
        self.learners: bool | None = None  # cluster version supports learners (asked once per cold start)
        self._client_urls: tuple[float, list[str]] | None = None  # (read at, URLs) from the client SRV record

    # -- the whole look (status) ---------------------------------------------------------------------------------
    def look(self, deadline: float) -> Look:
        """Everything a decision needs, as a pass reads it; etcd not answering is reported, not raised."""
        obs = self.observe((), deadline)
        view: EtcdView | None = None
        error: str | None = None
        if self.membership is not None:
            try:
                view = self.etcd(obs, deadline)
            except (MembershipError, EtcdTlsError) as exc:
                error = str(exc)
            if view is not None:
                obs = self.owners(obs, view, deadline)
        obs, records = self.records(obs, deadline)
        identity = self.identity(records)
        leaderless = view is None or view.leader is None
        loss = self.loss(identity, obs, deadline) if leaderless and self.membership is not None else None
        return Look(obs, view, records, error, identity, loss)

    def identity(self, records: Mapping[Key, RecordSet]) -> ClusterIdentity | None:
        """The cluster identity a read of the zone holds (``records`` reads its key with the record)."""
        found = records.get((identity_name(self.settings.srv_fqdn), "TXT"))
        return None if found is None else parse_identity(found.values, self.clock.now())

    def loss(self, identity: ClusterIdentity | None, obs: Observation, deadline: float) -> Loss | None:
        """Whether the identity's cluster has lost quorum for good, from EC2: its voters' instances as ``obs`` has
        them, the others described (one call; an instance EC2 no longer describes ended long ago)."""
        ids = voter_instances(identity)
        if not ids:
            return None
        states = {i: obs.instances[i].ec2_state for i in ids if i in obs.instances}
        missing = ids - set(states)
        if missing:
            states.update({i: inst.ec2_state for i, inst in self.asg.describe_instances(missing, deadline).items()})
        return lost_for_good(identity, states)

    # -- Auto Scaling and EC2 ------------------------------------------------------------------------------------
    def observe(self, ids: Iterable[str], deadline: float) -> Observation:
        """The served groups, their instances and the ``ids`` instances."""
        return self.asg.observe(ids, deadline)

    def owners(self, obs: Observation, view: EtcdView, deadline: float) -> Observation:
        """Add to the observation every instance a member names (by id) or that carries a member-ID tag, so
        identity and departure are judged on what EC2 says about *that* instance."""
        named = {m.name for m in view.members if is_instance_id(m.name)} - set(obs.instances)
        found = self.asg.describe_instances(named, deadline) if named else {}
        # Members not named after an instance (not started yet, or named otherwise): the ID recorded at add.
        tagged_ids = {m.hex_id for m in view.members if not is_instance_id(m.name)} - {
            i.tags.get(MEMBER_ID_TAG, "") for i in obs.instances.values()
        }
        if tagged_ids:
            found.update(self.asg.describe_instances(tagged_ids, deadline, by=f"tag:{MEMBER_ID_TAG}"))
        extra = {iid: found.get(iid, Instance(iid)) for iid in named} | {
            iid: inst for iid, inst in found.items() if iid not in obs.instances
        }
        if not extra:
            return obs
        return Observation(groups=obs.groups, instances={**extra, **obs.instances}, now=obs.now)

    # -- Route 53 ------------------------------------------------------------------------------------------------
    def records(self, obs: Observation, deadline: float) -> tuple[Observation, dict[Key, RecordSet]]:
        """The zone's records the coordinator owns, and ``obs`` with the owners of targets no instance explains."""
        assert self.route53 is not None
        s = self.settings
        targets = {t for i in obs.instances.values() if (t := target_of(i, s))}
        # The cluster identity record sits beside the peer record in Route 53's order: the same page holds it.
        current = self.route53.read(record_keys(s, targets) | {(identity_name(s.srv_fqdn), "TXT")}, deadline)
        if s.etcd_client_srv:  # the plan's read includes the client record: no second read while it is fresh
            self._remember_client_record(current.get((fqdn(s.etcd_client_srv, s.domain_name), "SRV")))
        obs = self._resolve_unknown_targets(obs, current, deadline)
        if s.target_mode == "a-record":
            old = peer_targets(current.get((s.srv_fqdn, "SRV")))
            missing = record_keys(s, old) - record_keys(s, targets)
            current = {**current, **self.route53.read(missing, deadline)} if missing else current
        return obs, current

    def _resolve_unknown_targets(
        self, obs: Observation, current: Mapping[Key, RecordSet], deadline: float
    ) -> Observation:
        """Look up record targets no observed instance owns, so the guard can judge their removal: by instance id
        when the target's first label is one (a-record mode), else by private DNS name; what is still unowned, by
        the ``etcd-srv-target`` tag (a terminated instance has no addresses left, but its tags stay while EC2 still
        describes it)."""
        known = {t for i in obs.instances.values() if (t := target_of(i, self.settings))}
        known |= {absolute(t) for t in tagged_owners(obs)}
        unknown = peer_targets(current.get((self.settings.srv_fqdn, "SRV"))) - known
        if not unknown:
            return obs
        by_id = {t.split(".")[0]: t for t in unknown if is_instance_id(t.split(".")[0])}
        found: dict[str, Instance] = {}
        if by_id:
            found.update(self.asg.describe_instances(list(by_id), deadline))
        names = [t.rstrip(".") for t in unknown if t.split(".")[0] not in by_id]
        if names and self.settings.target_mode == "private-dns":
            found.update(self.asg.describe_instances(names, deadline, by="private-dns-name"))
        owned = {t for i in found.values() if (t := target_of(i, self.settings))}
        owned |= {absolute(i.tags[TARGET_TAG]) for i in found.values() if i.tags.get(TARGET_TAG)}
        rest = sorted(unknown - owned)
        if rest:
            values = {v for t in rest for v in (t, t.rstrip("."))}
            found.update(self.asg.describe_instances(values, deadline, by=f"tag:{TARGET_TAG}"))
        if not found:
            return obs
        return Observation(groups=obs.groups, instances={**found, **obs.instances}, now=obs.now)

    # -- etcd ----------------------------------------------------------------------------------------------------
    def etcd(self, obs: Observation, deadline: float) -> EtcdView | None:
        """etcd's member list and each member's own health; None when there is no cluster to ask yet.

        No answer while an instance is in service (or on standby) is an error: the pass cannot judge quorum or
        add a member, so it stops and a retry tries again. So is no answer while a live instance that is not
        leaving carries the go signal (``etcd-cluster-state``): it was told to start etcd, so a cluster may run
        (founders starting, or started and not yet completed) — founding another would split it. No answer,
        nothing in service and no instance told to start that stays is a cluster not founded yet (or one every
        instance leaves): the record bootstraps a new one. A budgeted look raises whenever etcd does not answer.
        """
        assert self.membership is not None
        endpoints = self.endpoints(obs)
        served = [i for i in obs.instances.values() if i.group in obs.served]
        serving = any(i.lifecycle_state in IN_SERVICE_STATES for i in served)
        admitted = any(STATE_TAG in i.tags and not i.gone and departure(i) is None for i in served)
        strict = serving or admitted or self.budget is not None
        if not endpoints:
            if strict:
                raise EtcdUnavailable("(none)", "no endpoint: instances told to run etcd have no private IP")
            return None
        try:
            if serving and self.budget is None:
                members = self.membership.members(endpoints, min(deadline, self.clock.now() + VIEW_READ_SECONDS))
            else:  # a cluster being founded (or none yet), or a budgeted look: one round, no retries
                members = self.membership.members(endpoints, deadline, once=True)
        except EtcdUnavailable:
            if strict:
                raise
            return None
        view = self._statuses(members, deadline)
        if self.learners is None and view.healthy and self.budget is None:
            self.learners = supports_learners(self.membership.version(endpoints, deadline))
        return replace(view, learners=bool(self.learners))

    def _statuses(self, members: list[Any], deadline: float) -> EtcdView:
        """Each member's own status: healthy when it answers with a leader and no alarm; the leader most name. A
        budgeted look asks each member for at most ``budget`` seconds, and only while the deadline allows."""
        assert self.membership is not None
        healthy: set[str] = set()
        votes: dict[str, int] = {}
        index: dict[str, int] = {}
        clusters: dict[str, int] = {}
        for member in members:
            if not member.client_urls:
                continue
            until = deadline
            if self.budget is not None:
                if self.clock.now() + self.budget > deadline:
                    continue
                until = self.clock.now() + self.budget
            status = self.membership.status(member.client_urls[0], until)
            if status is None:
                continue
            index[member.id] = status.raft_index
            if status.has_leader and not status.errors:
                healthy.add(member.id)
                votes[status.leader] = votes.get(status.leader, 0) + 1
                clusters[status.cluster_id] = clusters.get(status.cluster_id, 0) + 1
        leader = max(votes, key=lambda k: votes[k]) if votes else None
        cluster = max(clusters, key=lambda k: clusters[k]) if clusters else ""
        return EtcdView(
            members=tuple(members),
            healthy=frozenset(healthy),
            leader=leader,
            raft_index=index,
            cluster_id=f"{int(cluster):x}" if cluster.isdigit() else cluster,
        )

    def endpoints(self, obs: Observation) -> list[str]:
        """Client URLs to reach etcd: configured ones, else the client record's and every running served
        instance's private IP (in service first; a member being founded or joining answers too, or is skipped)."""
        s = self.settings
        if s.etcd_endpoints:
            return list(s.etcd_endpoints)
        order = {"InService": 0, "Standby": 1}
        running = sorted(
            (
                i
                for i in obs.instances.values()
                if i.group in obs.served
                and not i.gone
                and i.private_ip
                and not (i.lifecycle_state or "").startswith("Warmed:")  # a warm-pool instance runs no member
            ),
            key=lambda i: (order.get(i.lifecycle_state or "", 2), i.instance_id),
        )
        by_ip = [f"{s.etcd_client_scheme}://{i.private_ip}:{s.etcd_client_port}" for i in running]
        return list(dict.fromkeys([*self._client_record_urls(), *by_ip]))  # the record first; IPs if it is stale

    def member_endpoints(self, view: EtcdView, obs: Observation, *, exclude: Member | None = None) -> list[str]:
        """Where to send a membership change: the leader, then the other healthy members (longest in the cluster
        first: a member that has just joined refuses changes for its first 5 s), then the rest."""
        by_id = {m.id: m for m in view.members}
        launched = {m.id: obs.instances[m.name].launch_time or 0.0 for m in view.members if m.name in obs.instances}
        order: list[str] = []
        if view.leader in by_id:
            order.append(view.leader)
        order += sorted((m for m in view.healthy if m not in order), key=lambda mid: (launched.get(mid, 0.0), mid))
        urls = [
            u
            for mid in order
            if mid in by_id and (exclude is None or mid != exclude.id)
            for u in by_id[mid].client_urls[:1]
        ]
        every = self.endpoints(obs)
        rest = [e for e in every if e not in urls and (exclude is None or e not in exclude.client_urls)]
        return urls + rest or every

    def _client_record_urls(self) -> list[str]:
        """Client URLs from ``etcd_client_srv`` (e.g. ``_etcd-client-ssl._tcp``), read through Route 53 at most once
        per ``CLIENT_RECORD_SECONDS``; a read that fails keeps the last answer (the members' IPs follow anyway)."""
        s = self.settings
        if not s.etcd_client_srv or self.route53 is None:
            return []
        now = self.clock.now()
        if self._client_urls is not None and now - self._client_urls[0] < CLIENT_RECORD_SECONDS:
            return self._client_urls[1]
        name = fqdn(s.etcd_client_srv, s.domain_name)
        try:
            record = self.route53.read([(name, "SRV")], now + CLIENT_RECORD_READ_SECONDS).get((name, "SRV"))
        except (ClientError, BotoCoreError, DeadlineReached) as exc:
            self.log.warning(
                "client record unreadable; using members' IPs", extra={"record": name, "error": str(exc)[:200]}
            )
            return self._client_urls[1] if self._client_urls else []
        return self._remember_client_record(record)

    def _remember_client_record(self, record: RecordSet | None) -> list[str]:
        s = self.settings
        urls = []
        for value in record.values if record is not None else ():
            try:
                srv = SrvValue.parse(value)
            except ValueError:
                continue
            urls.append(f"{s.etcd_client_scheme}://{srv.target.rstrip('.')}:{srv.port}")
        self._client_urls = (self.clock.now(), urls)
        return urls
