"""Shared test configuration: the emulated-AWS fixtures, which tests run real processes, and how tests split
across xdist workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local.aws import LocalAWS

pytest_plugins = ["infra.local.pytest_plugin"]


@pytest.fixture
def aws(local_aws: LocalAWS) -> LocalAWS:
    """The started emulated AWS of the tests: the plugin's ``local_aws`` (simulated clock), its constructor
    arguments from the module's or the test's ``local_aws`` marker, e.g.
    ``pytestmark = pytest.mark.local_aws(propagation=(5.0, 15.0))``."""
    return local_aws


# -- which tests run real processes ----------------------------------------------------------------------------
# Every test under tests/e2e starts real etcd or other real processes in a sandbox on the wall clock. These do too,
# outside it; they get the ``e2e`` marker here, so ``make test-fast`` (``-m "not e2e"``) leaves every one out.
# A module name alone means every test in it; (module, test) one test, wherever the module lives.
REAL_PROCESSES: tuple[str | tuple[str, str], ...] = (
    "test_aws_bootstrap.py",  # the instance start script in bash against a fake IMDS and etcd, on the wall clock
    "test_aws_build.py",  # pip builds of the Lambda zip; Python 3.12 importing it
    "test_aws_lint.py",  # cfn-lint, checkov, shellcheck
    "test_server.py",  # the emulator's HTTP server in a subprocess, and servers on the wall clock
    ("test_status.py", "test_the_status_command_runs_against_the_emulator_server_and_only_reads"),
    # the README's commands in a shell: the CLI's help, status and reconcile, and make deploy (pip builds the zip,
    # the AWS CLI packages and deploys it)
    ("test_readme_commands.py", "test_the_help_commands_run_and_speak_plain_text"),
    ("test_readme_commands.py", "test_the_readme_status_and_reconcile_examples_run_against_the_emulator"),
    ("test_readme_commands.py", "test_the_readme_deploy_runs_as_written_against_the_emulators_endpoints"),
)

# -- which simulated-time tests are too slow for the edit loop ---------------------------------------------------
# tests/slow.txt lists them (``module.py::test_function``, with how they were measured); they get the ``slow``
# marker, and ``make test-fast`` (``-m "not e2e and not slow"``) leaves them out. ``make test`` runs everything.
SLOW = frozenset(
    line.strip()
    for line in (Path(__file__).parent / "slow.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a simulated-time test listed in tests/slow.txt (not in make test-fast)")


# -- how they split over the workers -----------------------------------------------------------------------------
# ``make test`` runs four xdist workers on two cores with ``--dist loadgroup``. The real-time tests of tests/e2e
# mostly wait on the wall clock (a third of a core each): they run in three groups, each group one after another
# on a worker of its own, so no more than three clusters ever share the cores; the simulated-time tests
# (CPU-bound) take the fourth worker, and the other three once their group is done. The groups are balanced on
# measured wall times (seconds, on a loaded machine, longest first onto the lightest group). An entry is a module
# (every test in it) or ``module.py::test_name_prefix`` (those tests): the scenarios of test_membership_real.py
# are independent, and together longer than a third. A module not listed joins the lightest group.
REAL_TIME_GROUPS: dict[str, tuple[str, float]] = {
    "test_cluster.py": ("real-time-1", 183),
    "test_etcd_bootstrap.py": ("real-time-1", 54),
    "test_membership_real.py::test_standby_round_trip": ("real-time-1", 39),
    "test_etcd_model_matches_real.py": ("real-time-1", 27),
    "test_dns.py": ("real-time-1", 15),
    "test_membership_real.py::test_scale_in_while_a_member_is_down": ("real-time-2", 94),
    "test_barrier.py": ("real-time-2", 73),
    "test_snapshot_real.py": ("real-time-2", 58),
    "test_failed_first_start.py": ("real-time-2", 46),
    "test_sandbox.py": ("real-time-2", 34),
    "test_restore_real.py": ("real-time-2", 30),
    "test_recovery_real.py": ("real-time-2", 120),
    "test_leader_move_real.py": ("real-time-3", 83),
    "test_membership_real.py::test_a_joiner_whose_etcd_never_starts": ("real-time-3", 82),
    "test_membership_real.py::test_a_replacement_reusing_a_dead_instances_ip": ("real-time-3", 65),
    "test_membership_real.py::test_attached_cluster_with_ip_peer_urls": ("real-time-3", 39),
    "test_termination_policy_real.py": ("real-time-3", 38),
}
# The real-time groups start first, one on each of three workers; then the longest other tests, so none of them
# is left to run alone at the end while the other workers idle. xdist hands out work in collection order (make
# test passes --no-loadscope-reorder: by default loadgroup sends the groups with the most tests first).
LONGEST_FIRST: tuple[str, ...] = (
    "test_schedules.py::test_a_thousand_random_schedules_hold_invariants",
    "test_schedules.py::test_regression_schedules_hold_invariants",
    "test_hostile.py::test_hostile_batch_through_the_event_source_mapping_keeps_only_the_bad_messages",
    "test_aws_build.py::",
    "test_instance_refresh.py::",
    "test_template_agrees.py::",
    "test_coordinator_membership.py::test_a_scale_to_zero",
)


def _is_real_process(item: pytest.Item) -> bool:
    module = Path(str(item.path)).name
    return any(
        entry == module if isinstance(entry, str) else (module, item.originalname) == entry  # type: ignore[attr-defined]
        for entry in REAL_PROCESSES
    )


def _group(item: pytest.Item, loads: dict[str, float]) -> str:
    module = Path(str(item.path)).name
    test = f"{module}::{item.originalname}"  # type: ignore[attr-defined]
    for key, (group, _) in REAL_TIME_GROUPS.items():
        if key == module or ("::" in key and test.startswith(key)):
            return group
    return min(loads, key=lambda g: loads[g])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    loads: dict[str, float] = {}
    for group, seconds in REAL_TIME_GROUPS.values():
        loads[group] = loads.get(group, 0.0) + seconds
    for item in items:
        module = Path(str(item.path)).name
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.xdist_group(_group(item, loads)))
        elif _is_real_process(item):
            item.add_marker(pytest.mark.e2e)
        elif f"{module}::{item.originalname}" in SLOW:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.slow)

    def first(item: pytest.Item) -> tuple[bool, int]:
        real_time = any(str(m.args[0]).startswith("real-time-") for m in item.iter_markers("xdist_group"))
        longest = next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if _node(item).startswith(prefix)), len(LONGEST_FIRST)
        )
        return not real_time, longest

    items.sort(key=first)  # stable: the rest keep their order
    if getattr(config.option, "loadgroup", False):  # an xdist worker of --dist loadgroup
        for item in items:
            _join_group(item)


def _join_group(item: pytest.Item) -> None:
    """Give ``item`` the ``@group`` suffix by which ``--dist loadgroup`` sends a group to one worker, for its
    ``xdist_group`` marker. pytest-xdist 3.8 does this in its own hook by setting ``item._nodeid``, which under
    pytest 9.2 no longer changes the node id (it is ``item._id`` now): every test ran as a group of its own,
    anywhere. Nothing to do where the id has its suffix already (a pytest-xdist that does it again)."""
    names = sorted(
        {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    )
    if not names or "@" in item.nodeid.rsplit("]", 1)[-1]:
        return
    nodeid = f"{item.nodeid}@{'_'.join(names)}"
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(nodeid)  # type: ignore[attr-defined]
    else:
        item._nodeid = nodeid  # type: ignore[attr-defined]


def _node(item: pytest.Item) -> str:
    """``module.py::test_name[...]`` whatever folder the module is in."""
    return Path(str(item.path)).name + "::" + item.nodeid.split("::", 1)[-1]
