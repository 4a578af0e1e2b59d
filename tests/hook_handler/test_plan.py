"""The pure plan: who is listed, the CAS batch, the removal guard and the bootstrap barrier."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hook_handler.members import Group, Instance
from hook_handler.plan import Observation, RecordSet, build_plan, peer_targets
from hook_handler.settings import load_settings

NOW = 1_767_225_600.0
SRV = "_etcd-server._tcp.example.com."


def make_settings(**extra: str):
    env = {"domain_name": "example.com", "r53_zone_id": "Z1", "asg_names": "etcd", **extra}
    return load_settings(env)


def inst(n: int, state: str = "InService", *, group: str | None = "etcd", ec2: str = "running", tags=None) -> Instance:
    return Instance(
        instance_id=f"i-{n:017x}",
        group=group,
        lifecycle_state=state if group else None,
        ec2_state=ec2,
        private_ip=f"10.0.0.{n}",
        private_dns=f"ip-10-0-0-{n}.ec2.internal",
        tags=tags or {},
        launch_time=NOW - 10,
    )


def observe(*instances: Instance, desired: int | None = None) -> Observation:
    ids = tuple(i.instance_id for i in instances if i.group == "etcd")
    return Observation(
        groups={"etcd": Group("etcd", len(ids) if desired is None else desired, ids)},
        instances={i.instance_id: i for i in instances},
        now=NOW,
    )


def srv(*ns: int, ttl: int = 60) -> dict:
    rs = RecordSet.of(SRV, "SRV", ttl, [f"0 0 2380 ip-10-0-0-{n}.ec2.internal." for n in ns])
    return {rs.key: rs}


def test_launch_into_running_cluster_is_a_delete_create_swap_listing_the_new_instance():
    plan = build_plan(make_settings(), observe(inst(1), inst(2), inst(3, "Pending:Wait")), srv(1, 2))
    actions = [c["Action"] for c in plan.changes]
    assert actions == ["DELETE", "CREATE"]
    assert plan.changes[0]["ResourceRecordSet"]["ResourceRecords"] == [
        {"Value": "0 0 2380 ip-10-0-0-1.ec2.internal."},
        {"Value": "0 0 2380 ip-10-0-0-2.ec2.internal."},
    ]
    assert [r["Value"] for r in plan.changes[1]["ResourceRecordSet"]["ResourceRecords"]] == [
        "0 0 2380 ip-10-0-0-1.ec2.internal.",
        "0 0 2380 ip-10-0-0-2.ec2.internal.",
        "0 0 2380 ip-10-0-0-3.ec2.internal.",
    ]
    assert plan.launches == (inst(3).instance_id,)
    assert plan.cluster_state == "existing"


def test_first_record_is_a_create_and_last_member_leaving_is_a_delete():
    plan = build_plan(make_settings(), observe(inst(1, "Pending:Wait"), desired=1), {})
    assert [c["Action"] for c in plan.changes] == ["CREATE"]
    assert plan.cluster_state == "new"
    gone = build_plan(make_settings(), observe(inst(1, "Terminating:Wait")), srv(1))
    assert [c["Action"] for c in gone.changes] == ["DELETE"]
    assert gone.leaves == (inst(1).instance_id,)
    assert gone.targets == ()


def test_no_change_when_record_already_right():
    plan = build_plan(make_settings(), observe(inst(1), inst(2)), srv(1, 2))
    assert plan.changes == ()


def test_ttl_drift_is_repaired_with_the_current_ttl_in_the_delete():
    plan = build_plan(make_settings(), observe(inst(1)), srv(1, ttl=300))
    assert plan.changes[0]["ResourceRecordSet"]["TTL"] == 300
    assert plan.changes[1]["ResourceRecordSet"]["TTL"] == 60


def test_excluded_states_and_stopped_instances_are_not_members_but_standby_keeps_its_place():
    obs = observe(
        inst(1),
        inst(2, "Standby"),
        inst(3, "Terminating:Wait"),
        inst(4, "InService", ec2="stopped"),
        inst(5, "Pending"),
        inst(6, "Pending:Proceed"),
    )
    plan = build_plan(make_settings(), obs, {})
    assert plan.targets == ("ip-10-0-0-1.ec2.internal.", "ip-10-0-0-2.ec2.internal.", "ip-10-0-0-6.ec2.internal.")


def test_standby_neither_drops_nor_re_adds_a_member():
    """Defect 6 of issue 10: EnterStandby dropped the instance from the record (and its etcd member), and
    ExitStandby listed it again without a member add. Standby now keeps its place: no change either way."""
    plan = build_plan(make_settings(), observe(inst(1), inst(2, "Standby"), inst(3)), srv(1, 2, 3))
    assert plan.changes == () and plan.removed == () and plan.guard_kept == ()
    back = build_plan(make_settings(), observe(inst(1), inst(2), inst(3)), srv(1, 2, 3))
    assert back.changes == () and back.added == ()


def test_tag_selector_and_seed_tags_filter_members():
    settings = make_settings(project_name="p", etcd_tag_name="etcd", tag_selector="Role=*")
    good = inst(1, tags={"Project": "p", "etcd": "true", "Role": "x"})
    bad = inst(2, "Pending:Wait", tags={"Project": "p", "etcd": "false", "Role": "x"})
    plan = build_plan(settings, observe(good, bad), {})
    assert plan.targets == ("ip-10-0-0-1.ec2.internal.",)


def test_instance_outside_served_group_is_never_added():
    foreign = inst(9, "InService", group="other")
    plan = build_plan(make_settings(), observe(inst(1), foreign), srv(1))
    assert plan.changes == ()


def test_guard_keeps_members_that_a_wrong_tag_selector_would_drop():
    settings = make_settings(tag_selector="Role=etcd")  # none of the instances carry it
    plan = build_plan(settings, observe(inst(1), inst(2), inst(3)), srv(1, 2, 3))
    assert plan.changes == ()
    assert len(plan.guard_kept) == 3
    assert "still runs" in plan.guard_reasons[0]


def test_guard_lets_explained_removals_through_and_keeps_targets_no_instance_is_found_for():
    """Defects 3 and 4 of issue 10: a target whose instance could not be found (an IP-form target, a
    changed target naming) counted as "instance does not exist" and was removed. Only what the APIs say
    of a known instance explains a removal; an unknown target is kept and reported."""
    # instance 2 is terminated (bypassing hooks); instance 3 is not known to EC2 at all
    obs = observe(inst(1), inst(2, ec2="terminated"))
    plan = build_plan(make_settings(), obs, srv(1, 2, 3))
    assert plan.removed == ("ip-10-0-0-2.ec2.internal.",)
    assert plan.targets == ("ip-10-0-0-1.ec2.internal.", "ip-10-0-0-3.ec2.internal.")
    assert plan.guard_kept == ("ip-10-0-0-3.ec2.internal.",)
    assert "no instance found" in plan.guard_reasons[0]


def test_changing_the_target_naming_adds_the_new_form_and_removes_nothing():
    """Defect 4 of issue 10: switching `target_mode` made every old-form target an explained removal."""
    obs = observe(inst(1), inst(2), inst(3))
    plan = build_plan(make_settings(target_mode="a-record"), obs, srv(1, 2, 3))
    assert plan.removed == ()
    assert set(plan.guard_kept) == {f"ip-10-0-0-{n}.ec2.internal." for n in (1, 2, 3)}
    assert {f"ip-10-0-0-{n}.ec2.internal." for n in (1, 2, 3)} <= set(plan.targets)


def test_while_founding_an_instance_is_listed_once_whatever_the_naming_was():
    """Soak finding (session 7, chunk seed 20019): target_mode switched to a-record while a cluster was being
    founded; the record kept each founder's old name beside its new one, a founder's SRV discovery took six
    targets for three instances and bootstrapped a six-member cluster that never had a quorum. While no cluster
    runs, the other name of a listed instance goes (nobody is a member yet); once one runs, names are kept."""
    founders = [inst(n, "Pending:Wait", tags={"etcd-cluster-state": "new"}) for n in (1, 2, 3)]
    plan = build_plan(make_settings(target_mode="a-record"), observe(*founders), srv(1, 2, 3))
    assert len(plan.targets) == 3 and all(t.endswith(".example.com.") for t in plan.targets), plan.targets
    assert set(plan.removed) == {f"ip-10-0-0-{n}.ec2.internal." for n in (1, 2, 3)}
    assert plan.guard_kept == ()
    # A running cluster (etcd says so): the old names stay (the guard; members may advertise them).
    running = build_plan(make_settings(target_mode="a-record"), observe(*founders), srv(1, 2, 3), running=True)
    assert running.removed == ()
    assert {f"ip-10-0-0-{n}.ec2.internal." for n in (1, 2, 3)} <= set(running.targets)


def test_guard_allows_configured_number_of_unexplained_removals():
    settings = make_settings(tag_selector="Role=etcd", max_unexplained_removals="1")
    plan = build_plan(settings, observe(inst(1, tags={"Role": "etcd"}), inst(2)), srv(1, 2))
    assert plan.removed == ("ip-10-0-0-2.ec2.internal.",)


def test_barrier_holds_a_new_cluster_until_all_expected_instances_wait():
    obs = observe(inst(1, "Pending:Wait"), inst(2, "Pending:Wait"), desired=3)
    plan = build_plan(make_settings(), obs, {})
    assert plan.changes == ()
    assert set(plan.held) == {inst(1).instance_id, inst(2).instance_id}
    full = build_plan(
        make_settings(), observe(inst(1, "Pending:Wait"), inst(2, "Pending:Wait"), inst(3, "Pending:Wait")), {}
    )
    assert full.held == ()
    assert len(full.targets) == 3 and full.bootstrap and full.cluster_state == "new"
    assert len(full.launches) == 3


def test_barrier_uses_cluster_size_and_times_out_to_publish_who_arrived():
    settings = make_settings(cluster_size="5", bootstrap_timeout_seconds="60")
    obs = observe(inst(1, "Pending:Wait"), inst(2, "Pending:Wait"), inst(3, "Pending:Wait"))
    assert build_plan(settings, obs, {}).held
    late = Observation(groups=obs.groups, instances=obs.instances, now=NOW + 100)
    plan = build_plan(settings, late, {})
    assert plan.held == () and len(plan.targets) == 3
    assert "bootstrap timeout" in plan.notes[0]


def test_barrier_off_publishes_each_launch_at_once():
    plan = build_plan(make_settings(bootstrap_barrier="false"), observe(inst(1, "Pending:Wait"), desired=3), {})
    assert plan.targets == ("ip-10-0-0-1.ec2.internal.",)


def test_extra_srv_records_and_a_record_mode_change_in_one_batch():
    settings = make_settings(extra_srv_records="_etcd-client._tcp:2379", target_mode="a-record")
    plan = build_plan(settings, observe(inst(1, "Pending:Wait"), desired=1), {})
    created = {(c["ResourceRecordSet"]["Name"], c["ResourceRecordSet"]["Type"]): c for c in plan.changes}
    target = f"{inst(1).instance_id}.example.com."
    assert created[("_etcd-client._tcp.example.com.", "SRV")]["ResourceRecordSet"]["ResourceRecords"] == [
        {"Value": f"0 0 2379 {target}"}
    ]
    assert created[(target, "A")]["ResourceRecordSet"]["ResourceRecords"] == [{"Value": "10.0.0.1"}]
    assert created[(SRV, "SRV")]["ResourceRecordSet"]["ResourceRecords"] == [{"Value": f"0 0 2380 {target}"}]


def test_a_leave_event_alone_never_explains_a_removal():
    """Events say which action waits, never who leaves: the plan takes no event at all, so an instance the
    APIs still place in service stays whatever a termination event said of it."""
    leaving = inst(2, "InService")
    settings = make_settings(tag_selector="Role=etcd")
    obs = observe(inst(1, tags={"Role": "etcd"}), leaving)
    plan = build_plan(settings, obs, srv(1, 2))
    assert plan.removed == () and plan.guard_kept == ("ip-10-0-0-2.ec2.internal.",)


def test_targets_whose_member_removal_is_held_stay_listed():
    obs = observe(inst(1), inst(2), inst(3, "Terminating:Wait"))
    plan = build_plan(make_settings(), obs, srv(1, 2, 3), keep=["ip-10-0-0-3.ec2.internal."])
    assert plan.changes == () and plan.leaves == ()
    free = build_plan(make_settings(), obs, srv(1, 2, 3))
    assert free.removed == ("ip-10-0-0-3.ec2.internal.",) and free.leaves == (inst(3).instance_id,)


states = st.sampled_from(["Pending", "Pending:Wait", "Pending:Proceed", "InService", "Standby", "Terminating:Wait"])


@hsettings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(states, st.sampled_from(["running", "stopped", "terminated"]), st.booleans()), max_size=8),
    st.sets(st.integers(1, 10), max_size=6),
)
def test_plan_properties(rows, listed):
    """Whatever the group and the record say: the batch is a valid CAS of the current values,
    targets are members or guard-kept, and the record never lists a foreign instance."""
    instances = [
        inst(n + 1, state, ec2=ec2, group="etcd" if ours else "other") for n, (state, ec2, ours) in enumerate(rows)
    ]
    current = srv(*listed) if listed else {}
    plan = build_plan(make_settings(bootstrap_barrier="false"), observe(*instances), current)
    deletes = [c for c in plan.changes if c["Action"] == "DELETE"]
    for d in deletes:
        key = (d["ResourceRecordSet"]["Name"], d["ResourceRecordSet"]["Type"])
        assert d["ResourceRecordSet"] == current[key].to_route53()
    foreign = {f"ip-10-0-0-{n + 1}.ec2.internal." for n, (_, _, ours) in enumerate(rows) if not ours}
    members = {m.private_dns + "." for m in plan.members}
    for target in plan.targets:
        assert target in members or target in plan.guard_kept
        assert target not in foreign or target in peer_targets(current.get((SRV, "SRV")))
    assert all(c["ResourceRecordSet"]["ResourceRecords"] for c in plan.changes)


def test_with_membership_a_running_cluster_grows_one_joiner_at_a_time():
    """Defect 2 of issue 10 (membership is the default): without endpoints settings membership was off, so
    joiners into a running cluster were listed together and none was `member add`ed."""
    settings = make_settings()  # membership is the default
    obs = observe(inst(1), inst(2), inst(3), inst(4, "Pending:Wait"), inst(5, "Pending:Wait"))
    plan = build_plan(settings, obs, srv(1, 2, 3))
    assert plan.launches == (inst(4).instance_id,)
    assert plan.queued == (inst(5).instance_id,)
    assert "ip-10-0-0-5.ec2.internal." not in plan.targets
    # while the listed joiner is unsettled, nobody else is listed
    again = build_plan(settings, obs, srv(1, 2, 3, 4))
    assert again.changes == () and again.queued == (inst(5).instance_id,)
    # membership off: both join in one change
    both = build_plan(make_settings(etcd_membership="false"), obs, srv(1, 2, 3))
    assert both.queued == () and len(both.launches) == 2


def test_founding_members_are_told_new_even_without_the_barrier():
    plan = build_plan(make_settings(bootstrap_barrier="false"), observe(inst(1, "Pending:Wait"), desired=3), {})
    assert plan.cluster_state == "new"
    joined = build_plan(make_settings(bootstrap_barrier="false"), observe(inst(1), inst(2, "Pending:Wait")), srv(1))
    assert joined.cluster_state == "existing"


def test_a_name_no_member_advertises_goes_once_the_member_is_listed_under_its_own():
    """A `target_mode` changed and changed back left the other naming's targets in the record for good (2N
    targets for N members, and every later joiner failed with "member count is unequal"). With etcd's word
    for the members' names the stray names go; DNS-only keeps them (a naming change never removes)."""
    obs = observe(inst(1), inst(2))
    strays = {f"i-{n:017x}.example.com.": n for n in (1, 2)}
    both = {**srv(1, 2)}
    rs = both[(SRV, "SRV")]
    both[(SRV, "SRV")] = RecordSet.of(SRV, "SRV", 60, [*rs.values, *(f"0 0 2380 {t}" for t in strays)])
    members = {f"ip-10-0-0-{n}.ec2.internal" for n in (1, 2)}
    plan = build_plan(make_settings(), obs, both, advertised=members)
    assert set(plan.removed) == set(strays) and plan.targets == tuple(sorted(f"{m}." for m in members))
    dns_only = build_plan(make_settings(etcd_membership="false"), obs, both)
    assert dns_only.removed == () and set(dns_only.guard_kept) == set(strays)


def test_a_member_is_listed_by_the_peer_host_it_advertises_whatever_target_mode_says_now():
    """Soak finding (issue 10, 2026-12-02): a cluster founded while `target_mode=a-record` kept its members'
    A-record peer URLs; with `private-dns` back, the record listed each member twice (its advertised A-record name,
    kept, and its DNS name, added), so every joiner's SRV discovery failed ("member count is unequal") and it
    never started. A member is listed once, by the name its etcd member advertises; a joiner (no member yet) by
    the current naming; DNS-only (no member list) by the current naming."""
    go = {"etcd-cluster-state": "new"}
    obs = observe(inst(1, tags=go), inst(2, tags=go), inst(3, "Pending:Wait"))
    a_names = {n: f"i-{n:017x}.example.com." for n in (1, 2)}
    current = {(SRV, "SRV"): RecordSet.of(SRV, "SRV", 60, [f"0 0 2380 {a_names[n]}" for n in (1, 2)])}
    advertised = {a_names[n].rstrip(".") for n in (1, 2)}
    plan = build_plan(make_settings(), obs, current, advertised=advertised)
    assert plan.targets == tuple(sorted([*a_names.values(), "ip-10-0-0-3.ec2.internal."]))
    assert plan.added == (inst(3).instance_id,) and plan.removed == ()
    assert not any(key[1] == "A" for key in plan.desired)  # private-dns mode writes no A record
    # Leaving: a member listed by its advertised name is a leave once that name is gone from the record.
    leaving = observe(inst(1, tags=go), inst(2, "Terminating:Wait", tags=go))
    out = build_plan(make_settings(), leaving, current, advertised=advertised)
    assert out.leaves == (inst(2).instance_id,) and out.targets == (a_names[1],)


def test_a_target_no_instance_and_no_etcd_member_has_goes_with_etcds_word_only():
    """Soak finding (issue 10, 2026-12-02, twice): a founder that never started was abandoned and terminated; its
    addresses were gone and the tag naming its target had not been written (a lost CreateTags), so no instance was
    found for its name and the removal guard kept it in the record for good beside the replacement's cluster.
    With etcd's member list (a cluster answered), a name no member advertises and no instance has names nobody:
    it goes. DNS-only (no member list) the guard keeps it, as before."""
    obs = observe(inst(2))
    current = srv(1, 2)  # ip-10-0-0-1: its instance is gone without a trace
    plan = build_plan(make_settings(), obs, current, advertised={"ip-10-0-0-2.ec2.internal"}, members_known=True)
    assert plan.removed == ("ip-10-0-0-1.ec2.internal.",) and plan.targets == ("ip-10-0-0-2.ec2.internal.",)
    # Not every member identified with an instance (e.g. members advertising IP peer URLs): proves nothing.
    unsure = build_plan(make_settings(), obs, current, advertised={"ip-10-0-0-2.ec2.internal"})
    assert unsure.guard_kept == ("ip-10-0-0-1.ec2.internal.",)
    dns_only = build_plan(make_settings(etcd_membership="false"), obs, current)
    assert dns_only.guard_kept == ("ip-10-0-0-1.ec2.internal.",)
    # A name a member still advertises stays, instance or not (its removal from etcd decides).
    kept = build_plan(
        make_settings(), obs, current, advertised={"ip-10-0-0-1.ec2.internal", "ip-10-0-0-2.ec2.internal"}
    )
    assert "ip-10-0-0-1.ec2.internal." in kept.targets


def test_a_target_no_instance_shows_for_goes_only_once_it_stays_so_past_the_grace():
    """Soak finding (2ab9e87, chunk seed 20033, issue 10): a pass's describes did not show a replacement another
    pass had just listed (the record is read after the describes, and describes lag), and etcd had no member for
    it yet (it is added after its listing is INSYNC): the rule above dropped the joiner's target while it joined.
    Such a target is dropped only when the coordinator says it stayed so past the grace (``orphans_ripe``)."""
    obs = observe(inst(2))
    current = srv(1, 2)
    args = dict(advertised={"ip-10-0-0-2.ec2.internal"}, members_known=True)
    young = build_plan(make_settings(), obs, current, orphans_ripe=set(), **args)
    assert young.orphans == ("ip-10-0-0-1.ec2.internal.",)
    assert young.removed == () and young.guard_kept == () and not young.changes
    assert "ip-10-0-0-1.ec2.internal." in young.targets
    ripe = build_plan(make_settings(), obs, current, orphans_ripe={"ip-10-0-0-1.ec2.internal."}, **args)
    assert ripe.removed == ("ip-10-0-0-1.ec2.internal.",) and ripe.targets == ("ip-10-0-0-2.ec2.internal.",)


def test_a_dismantle_is_a_scale_to_zero_not_every_visible_instance_leaving():
    """Review of the dismantle rule (issue 10): judged from lifecycle states alone, the moment a one-member group's
    instance is replaced (health check, TerminateInstanceInAutoScalingGroup without decrement, an instance refresh)
    — old instance Terminating:Wait, the replacement not in a describe yet — read as a scale to zero: the last
    voter's termination would complete, the record go, and the replacement found an empty cluster. A dismantle
    needs every served group's desired capacity at 0."""
    from hook_handler.decide import dismantling

    leaving = inst(1, "Terminating:Wait")
    assert not dismantling(observe(leaving, desired=1))  # a replacement is on its way
    assert dismantling(observe(leaving, desired=0))
    assert not dismantling(observe(leaving, inst(2, "Pending:Wait"), desired=0))  # someone stays (for now)
