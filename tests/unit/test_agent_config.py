"""The agent's config: precedence flags > environment > file > defaults; unknown keys and bad values refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from gpucensus.agent import config as agent_config
from gpucensus.common.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "agent.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file():
    config = agent_config.load(None, env={})
    assert config.schedule_interval_seconds == 60.0
    assert config.inventory_backend == "nvml"
    assert config.key_path == Path("/var/lib/gpucensus/node.key")
    assert config.spool_file == Path("/var/lib/gpucensus/spool.db")
    assert config.enrollment_file == Path("/var/lib/gpucensus/node.key.enrollment.json")
    assert not config.tls_enabled


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    path = write(
        tmp_path,
        '[schedule]\ninterval_seconds = 30\njitter_fraction = 0.2\n[collector]\naddress = "file:1"\n'
        '[node]\nsite = "file-site"\n',
    )
    env = {"GPUCENSUS_AGENT_SCHEDULE_INTERVAL_SECONDS": "15", "GPUCENSUS_AGENT_COLLECTOR_ADDRESS": "env:2"}
    config = agent_config.load(path, env=env, overrides={"collector.address": "flag:3", "node.site": None})
    assert config.collector_address == "flag:3"  # flag beats env and file
    assert config.schedule_interval_seconds == 15.0  # env beats file
    assert config.schedule_jitter_fraction == 0.2  # file beats default
    assert config.node_site == "file-site"  # a flag not given (None) changes nothing
    assert config.spool_max_bytes == 64 * 1024 * 1024  # default


def test_unknown_key_names_the_file_and_the_key(tmp_path):
    path = write(tmp_path, "[spool]\nmax_byte = 10\n")
    with pytest.raises(ConfigError) as err:
        agent_config.load(path, env={})
    assert str(path) in err.value.message and "spool.max_byte" in err.value.message
    assert "max_bytes" in err.value.hint


def test_unknown_section_is_refused(tmp_path):
    path = write(tmp_path, "[uplink]\naddress = 'x:1'\n")
    with pytest.raises(ConfigError, match=r"unknown section \[uplink\]"):
        agent_config.load(path, env={})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[schedule]\ninterval_seconds = 'soon'\n", "schedule.interval_seconds must be a number"),
        ("[spool]\nmax_bytes = 1.5\n", "spool.max_bytes must be an integer"),
        ("[spool]\nmax_bytes = true\n", "spool.max_bytes must be an integer"),
        ("[node]\nsite = 7\n", "node.site must be a string"),
        ("[schedule]\ninterval_seconds = 0\n", "interval_seconds must be > 0"),
        ("[schedule]\njitter_fraction = 1.0\n", "jitter_fraction must be in [0, 1)"),
        ("[collector]\naddress = 'nohostport'\n", "host:port"),
        ("[collector]\ntls_cert_file = 'c.pem'\n", "must be set together"),
        ("[collector]\ntls_cert_file = 'c.pem'\ntls_key_file = 'k.pem'\n", "tls_ca_file is not"),
        ("[enrollment]\ntoken = 'a'\ntoken_file = 'b'\n", "not both"),
        ("schedule = 3\n", "must be a table"),
        ("[schedule\n", "not valid TOML"),
        ("[schedule]\ninterval_seconds = inf\n", "schedule.interval_seconds must be a number"),
        ("[collector]\ntimeout_seconds = nan\n", "collector.timeout_seconds must be a number"),
    ],
)
def test_bad_values_are_config_errors(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        agent_config.load(path, env={})
    assert needle in err.value.message
    assert str(path) in err.value.message


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="GPUCENSUS_AGENT_SPOOL_MAX_BYTES"):
        agent_config.load(None, env={"GPUCENSUS_AGENT_SPOOL_MAX_BYTES": "lots"})


def test_non_finite_environment_value_is_refused():
    with pytest.raises(ConfigError, match="GPUCENSUS_AGENT_SCHEDULE_INTERVAL_SECONDS"):
        agent_config.load(None, env={"GPUCENSUS_AGENT_SCHEDULE_INTERVAL_SECONDS": "inf"})


def test_binary_garbage_file_is_a_config_error_not_a_traceback(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not valid TOML"):
        agent_config.load(path, env={})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        agent_config.load(tmp_path / "nope.toml", env={})


def test_relative_paths_in_the_file_resolve_against_its_directory(tmp_path):
    path = write(tmp_path, '[node]\nstate_dir = "state"\n[enrollment]\ntoken_file = "token.txt"\n')
    config = agent_config.load(path, env={}, overrides={"spool.path": "elsewhere.db"})
    assert config.node_state_dir == str(tmp_path / "state")
    assert config.key_path == tmp_path / "state" / "node.key"
    assert config.spool_file == Path("elsewhere.db")  # from a flag: relative to the working directory


def test_token_inline_or_from_file(tmp_path):
    (tmp_path / "token.txt").write_text("tok-123\n", encoding="utf-8")
    from_file = agent_config.load(write(tmp_path, '[enrollment]\ntoken_file = "token.txt"\n'), env={})
    assert from_file.read_token() == "tok-123"
    inline = agent_config.load(None, env={"GPUCENSUS_AGENT_ENROLLMENT_TOKEN": " tok-9 "})
    assert inline.read_token() == "tok-9"
    missing = agent_config.load(write(tmp_path, '[enrollment]\ntoken_file = "gone.txt"\n'), env={})
    with pytest.raises(ConfigError, match=r"gone\.txt"):
        missing.read_token()


def test_example_config_loads_and_documents_every_key():
    config = agent_config.load(EXAMPLE, env={})
    assert config.source == str(EXAMPLE)
    with EXAMPLE.open("rb") as f:
        document = tomllib.load(f)
    text = EXAMPLE.read_text(encoding="utf-8")
    for section, keys in agent_config.SCHEMA.items():
        for key in keys:
            documented = key in document.get(section, {}) or f"# {key} =" in text
            assert documented, f"{section}.{key} is not in {EXAMPLE.name}"


@pytest.mark.parametrize(
    ("file_address", "env_address", "flag_address", "blamed"),
    [
        ("collector.example", None, None, "agent.toml"),
        ("collector.example:7443", "collector.example", None, "environment GPUCENSUS_AGENT_COLLECTOR_ADDRESS"),
        ("collector.example:7443", None, "collector.example", "command line"),
    ],
)
def test_an_address_without_a_port_is_blamed_on_where_it_came_from(
    tmp_path, file_address, env_address, flag_address, blamed
):
    path = tmp_path / "agent.toml"
    path.write_text(f"[collector]\naddress = '{file_address}'\n")
    env = {} if env_address is None else {"GPUCENSUS_AGENT_COLLECTOR_ADDRESS": env_address}
    with pytest.raises(ConfigError) as caught:
        agent_config.load(path, env=env, overrides={"collector.address": flag_address})
    assert caught.value.message.startswith(str(path) if blamed == "agent.toml" else blamed), caught.value.message
    assert "'collector.example' must be host:port" in caught.value.message
    assert "7443" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[collector]\nrequest_certificate = true\n", "request_certificate needs collector.tls_ca_file"),
        (
            '[collector]\nrequest_certificate = true\ntls_ca_file = "ca.pem"\ntls_cert_file = "n.pem"\n'
            'tls_key_file = "n.key"\n',
            "not both",
        ),
        ('[collector]\nenroll_address = "collector"\n', "must be host:port"),
        ('[collector]\nrequest_certificate = "sometimes"\n', "must be true or false"),
    ],
)
def test_issued_certificate_settings_are_checked(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle):
        agent_config.load(write(tmp_path, text), env={})


def test_an_issued_certificate_lives_next_to_the_node_key(tmp_path):
    config = agent_config.load(
        write(tmp_path, '[collector]\nrequest_certificate = true\ntls_ca_file = "ca.pem"\n[node]\nstate_dir = "s"\n'),
        env={"GPUCENSUS_AGENT_COLLECTOR_ENROLL_ADDRESS": "collector:7444"},
    )
    assert config.client_certificate_files == (
        str(tmp_path / "s/node.key.client.pem"),
        str(tmp_path / "s/node.key.client.key"),
    )
    assert config.collector_enroll_address == "collector:7444"
    plain = agent_config.load(None, env={"GPUCENSUS_AGENT_COLLECTOR_REQUEST_CERTIFICATE": "false"})
    assert plain.client_certificate_files == ("", "")
