"""Settings: the seed's names keep their meaning; bad values fail fast naming the variable."""

from __future__ import annotations

import pytest

from hook_handler.exceptions import SettingsError
from hook_handler.settings import SETTING_NAMES, SETTINGS_SPEC, InvalidSettings, load_settings

BASE = {"domain_name": "example.com", "r53_zone_id": "/hostedzone/Z0123ABC", "asg_names": "etcd"}


def test_seed_variables_keep_their_names():
    seed = {
        "project_name",
        "environment",
        "etcd_tag_name",
        "srv_record_name",
        "domain_name",
        "r53_zone_id",
        "srv_record_ttl",
        "etcd_port",
        "log_level",
    }
    assert seed <= SETTING_NAMES


def test_seed_deployment_without_new_settings_still_loads():
    env = {
        "project_name": "proj",
        "environment": "prod",
        "etcd_tag_name": "etcd",
        "srv_record_name": "_etcd-server._tcp",
        "domain_name": "example.com",
        "r53_zone_id": "Z1",
        "srv_record_ttl": "300",
        "etcd_port": "2380",
        "log_level": "DEBUG",
    }
    s = load_settings(env)
    assert s.instance_tags == (("Project", "proj"), ("Environment", "prod"), ("etcd", "true"))
    assert s.srv_fqdn == "_etcd-server._tcp.example.com." and s.srv_record_ttl == 300 and s.log_level == "DEBUG"
    assert s.r53_zone_id == "Z1" and s.asg_names == ()


def test_defaults_and_normalisation():
    s = load_settings(BASE)
    assert s.r53_zone_id == "Z0123ABC"
    assert s.domain_name == "example.com."
    assert s.srv_records == (("_etcd-server._tcp.example.com.", 2380),)
    assert s.launch_failure_result == "ABANDON" and s.bootstrap_barrier is True


@pytest.mark.parametrize(
    ("override", "variable", "fragment"),
    [
        ({"domain_name": ""}, "domain_name", "is not set"),
        ({"r53_zone_id": "zone one"}, "r53_zone_id", "hosted zone id"),
        ({"srv_record_ttl": "ten"}, "srv_record_ttl", "expected a whole number from 0 to 2147483647"),
        ({"etcd_port": "70000"}, "etcd_port", "out of range"),
        ({"log_level": "LOUD"}, "log_level", "log level"),
        ({"asg_names": ""}, "asg_names", "every instance in the account"),
        ({"tag_selector": "Role"}, "tag_selector", "Key=Value"),
        ({"tag_selector": "{bad json"}, "tag_selector", "JSON"),
        ({"target_mode": "ip"}, "target_mode", "private-dns or a-record"),
        ({"a_record_template": "{nope}"}, "a_record_template", "placeholder"),
        ({"extra_srv_records": "_etcd-client._tcp"}, "extra_srv_records", "name:port"),
        ({"launch_failure_result": "RETRY"}, "launch_failure_result", "ABANDON or CONTINUE"),
        ({"bootstrap_barrier": "maybe"}, "bootstrap_barrier", "true or false"),
        ({"etcd_endpoints": "etcd:2379"}, "etcd_endpoints", "client URL"),
        ({"poll_interval_seconds": "0"}, "poll_interval_seconds", "out of range"),
        ({"srv_record_name": "etcd"}, "srv_record_name", "SRV owner name"),
    ],
)
def test_bad_value_names_the_variable_and_what_is_expected(override, variable, fragment):
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, **override})
    assert err.value.variable == variable
    assert str(err.value).startswith(f"setting {variable}:")
    assert fragment in str(err.value)
    assert "expected" in str(err.value)


def test_every_setting_is_documented():
    assert all(spec.doc for spec in SETTINGS_SPEC)
    assert len({s.name for s in SETTINGS_SPEC}) == len(SETTINGS_SPEC)


def test_every_missing_and_bad_setting_is_reported_at_once_in_the_settings_order():
    """Three runs to find three problems was the old way: one load names them all."""
    with pytest.raises(InvalidSettings) as err:
        load_settings({"srv_record_ttl": "-1", "log_level": "LOUD", "etcd_port": "x"})
    variables = [e.variable for e in err.value.errors]
    assert variables == ["domain_name", "r53_zone_id", "srv_record_ttl", "etcd_port", "log_level", "asg_names"]
    assert err.value.variable == "domain_name"  # a caller that knows one SettingsError reads the first
    lines = str(err.value).splitlines()
    assert len(lines) == 6 and all(line.startswith("setting ") and "; expected " in line for line in lines)


def test_messages_are_plain_text_with_ranges_written_out():
    with pytest.raises(InvalidSettings) as err:
        load_settings({"srv_record_ttl": "9999999999", "poll_interval_seconds": "0"})
    text = str(err.value)
    assert "`" not in text and "*" not in text
    assert "setting domain_name: is not set; expected the hosted zone's domain name, e.g. example.com" in text
    assert "setting srv_record_ttl: 9999999999 is out of range; expected a whole number from 0 to 2147483647" in text
    assert "setting poll_interval_seconds: 0 is out of range; expected a number from 0.1 to 60" in text


def test_a_single_problem_is_still_a_settings_error_naming_its_variable():
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, "target_mode": "ip"})
    assert isinstance(err.value, InvalidSettings) and len(err.value.errors) == 1
    assert str(err.value) == "setting target_mode: 'ip' is not a target mode; expected private-dns or a-record"


def test_an_extra_srv_record_may_not_name_the_peer_record_or_repeat():
    """`extra_srv_records` naming the peer record with another port silently rewrote it."""
    import pytest

    from hook_handler.exceptions import SettingsError
    from hook_handler.settings import load_settings

    base = {"domain_name": "example.com", "r53_zone_id": "Z1", "asg_names": "etcd"}
    for extra in ("_etcd-server._tcp:2379", "_etcd-server._tcp.example.com.:2381", "_a._tcp:1,_a._tcp:2"):
        with pytest.raises(SettingsError) as info:
            load_settings({**base, "extra_srv_records": extra})
        assert info.value.variable == "extra_srv_records"
    assert load_settings({**base, "extra_srv_records": "_etcd-client._tcp:2379"}).extra_srv_records
