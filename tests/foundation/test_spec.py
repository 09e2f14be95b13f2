"""Network spec validation: every malformed spec names the file, the field and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbds_py.errors import ConfigError
from mbds_py.spec import load_spec

GOOD = """
[devnet]
state_dir = "state"

[[chains]]
name = "consortium"
kind = "consortium"
chain_id = 1001

[[chains]]
name = "hospital-a"
kind = "private"
chain_id = 1002
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "net.toml"
    p.write_text(text)
    return p


def test_embedded_default_spec_has_consortium_and_three_private_chains():
    spec = load_spec()
    assert spec.consortium.name == "consortium"
    assert [c.name for c in spec.private_chains] == ["hospital-a", "hospital-b", "platform-c"]
    assert len({c.chain_id for c in spec.chains}) == 4


def test_state_dir_is_relative_to_the_spec_file(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        (GOOD.replace("chain_id = 1002", 'chain_id = "x"'), "chains[1].chain_id", "expected an integer"),
        (GOOD.replace('kind = "private"', 'kind = "public"'), "chains[1].kind", "expected one of"),
        (GOOD.replace("chain_id = 1002", "chain_id = 1001"), "chains[1].chain_id", "duplicate value 1001"),
        (GOOD.replace('name = "hospital-a"', 'name = "consortium"'), "chains[1].name", "duplicate value"),
        (GOOD.replace('kind = "private"', 'kind = "consortium"'), "chains.kind", "expected exactly one"),
        (GOOD + 'port = 70000\n', "chains[1].port", "expected 0"),
        (GOOD + 'rpc_url = "ftp://x"\n', "chains[1].rpc_url", "http(s)://"),
        (GOOD + 'colour = "blue"\n', "chains[1]", "unknown key"),
        (GOOD.replace('name = "hospital-a"', 'name = "bad name!"'), "chains[1].name", "letters, digits"),
        ('[devnet]\nengine = "geth"\n' + GOOD.split("[devnet]")[1].split("\n", 2)[2],
         "devnet.engine", "expected one of"),
    ],
)
def test_malformed_spec_names_file_field_and_expectation(tmp_path, text, field, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_spec_without_chains_is_refused(tmp_path):
    path = write(tmp_path, "[devnet]\n")
    with pytest.raises(ConfigError, match="chains"):
        load_spec(path)


def test_invalid_toml_is_refused_with_file_name(tmp_path):
    path = write(tmp_path, "[[chains]\nname=")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_spec(path)
    assert info.value.path == str(path)


def test_missing_spec_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_spec(tmp_path / "nope.toml")


HOSTS = GOOD + """
[[hosts]]
address = "10.70.0.2"
services = ["consortium", "consortium-*"]
netns = "lab-cons"

[[hosts]]
address = "hospital-a.example.org"
bind = "0.0.0.0"
services = ["hospital-a", "hospital-a-replica-*"]

[[hosts]]
address = "fd00::5"
services = ["storage-1", "storage-0"]
"""


def test_hosts_place_each_service_where_the_first_matching_rule_says(tmp_path):
    spec = load_spec(write(tmp_path, HOSTS))
    cons = spec.place("consortium-insurer")
    assert (cons.bind, cons.address, cons.netns) == ("10.70.0.2", "10.70.0.2", "lab-cons")
    assert spec.place("consortium").url(8545) == "http://10.70.0.2:8545"
    replica = spec.place("hospital-a-replica-3")
    assert (replica.bind, replica.address, replica.netns) == ("0.0.0.0", "hospital-a.example.org", None)
    assert spec.place("storage-1").url(5001) == "http://[fd00::5]:5001"
    other = spec.place("proxy-nha")  # named by no rule: the [devnet] host
    assert (other.bind, other.address, other.netns) == ("127.0.0.1", "127.0.0.1", None)


@pytest.mark.parametrize("rule, field, expected", [
    ('address = "0.0.0.0"\nservices = ["proxy-*"]', "hosts[0].address", "wildcard address cannot be reached"),
    ('address = "::"\nservices = ["proxy-*"]', "hosts[0].address", "wildcard address cannot be reached"),
    ('address = "not an address!"\nservices = ["proxy-*"]', "hosts[0].address", "an IP address or a host name"),
    ('address = "10.0.0.1"\nservices = []', "hosts[0].services", "service names or patterns"),
    ('address = "10.0.0.1"\nservices = ["x"]\nnetns = "../../etc"', "hosts[0].netns", "network namespace name"),
    ('address = "10.0.0.1"\nservices = ["x"]\nport = 5', "hosts[0]", "unknown key(s) ['port']"),
    ('services = ["x"]', "hosts[0].address", "missing"),
    ('address = "10.0.0.1"\nservices = ["x"]\nbind = "bad host!"', "hosts[0].bind", "an IP address or a host name"),
])
def test_malformed_hosts_rule_names_the_field(tmp_path, rule, field, expected):
    with pytest.raises(ConfigError) as err:
        load_spec(write(tmp_path, GOOD + f"\n[[hosts]]\n{rule}\n"))
    assert err.value.field == field and expected in str(err.value)


def test_a_wildcard_devnet_host_is_refused_since_others_could_not_reach_it(tmp_path):
    with pytest.raises(ConfigError, match="wildcard") as err:
        load_spec(write(tmp_path, GOOD.replace("[devnet]\n", '[devnet]\nhost = "0.0.0.0"\n')))
    assert err.value.field == "devnet.host"
