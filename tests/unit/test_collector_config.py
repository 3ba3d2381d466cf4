"""Collector config: defaults, file, environment, flags (in that increasing precedence); unknown keys refused."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from gpucensus.collector.config import _SECTIONS, CollectorConfig, ServerConfig, StoreConfig, load_config
from gpucensus.collector.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_sqlite_store_and_a_1_mib_plaintext_server() -> None:
    config = load_config(env={})
    assert config == CollectorConfig()
    assert config.store.kind == "sqlite"
    assert config.store.open_options() == {"data_dir": config.store.data_dir}
    assert (config.server.max_message_bytes, config.server.tls_cert, config.server.require_client_auth) == (
        1024 * 1024, "", False)  # fmt: skip
    assert (config.nodes.interval_seconds, config.nodes.stale_intervals) == (60, 3)


def test_a_full_file_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[store]
kind = "sqlite"
data_dir = "data"
[server]
listen = "0.0.0.0:7443"
tls_cert = "tls/server.pem"
tls_key = "/etc/gpucensus/server.key"
client_ca = "tls/ca.pem"
require_client_auth = true
max_message_bytes = 524288
keepalive_time_seconds = 30
[policy]
pack = "carnegie-2025"
[nodes]
interval_seconds = 300
""",
    )
    config = load_config(path, env={})
    assert config.source == str(path)
    assert config.store.open_options() == {"data_dir": str(tmp_path / "data")}
    assert config.server == ServerConfig(
        listen="0.0.0.0:7443", tls_cert=str(tmp_path / "tls/server.pem"), tls_key="/etc/gpucensus/server.key",
        client_ca=str(tmp_path / "tls/ca.pem"), require_client_auth=True, max_message_bytes=524288,
        keepalive_time_seconds=30,
    )  # fmt: skip
    assert (config.policy.pack, config.nodes.interval_seconds) == ("carnegie-2025", 300)


def test_postgres_options() -> None:
    env = {"GPUCENSUS_STORE_KIND": "postgres", "GPUCENSUS_STORE_DSN": "host=db dbname=g"}
    assert load_config(env=env).store.open_options() == {"dsn": "host=db dbname=g", "schema": None}
    store = StoreConfig(kind="postgres", dsn="host=db", schema="census")
    assert store.open_options() == {"dsn": "host=db", "schema": "census"}


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = "10.0.0.1:1"\nmax_workers = 4\n[nodes]\ninterval_seconds = 120\n')
    env = {"GPUCENSUS_SERVER_LISTEN": "10.0.0.2:2", "GPUCENSUS_NODES_INTERVAL_SECONDS": "90",
           "GPUCENSUS_SERVER_REQUIRE_CLIENT_AUTH": "off", "GPUCENSUS_UNRELATED": "ignored"}  # fmt: skip
    config = load_config(path, env=env, overrides={"server": {"listen": "10.0.0.3:3", "max_workers": None}})
    assert config.server.listen == "10.0.0.3:3"  # flag
    assert config.nodes.interval_seconds == 90  # environment over file
    assert config.server.max_workers == 4  # file (a flag left at None does not override)
    assert config.server.keepalive_time_seconds == 60  # default


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[store]\nknd = "sqlite"\n', ["knd", "[store]"]),
        ("[storage]\n", ["[storage]"]),
        ('[server]\nlisten = "x:1"\ntls = true\n', ["'tls'", "[server]"]),
        ("store = 1\n", ["store"]),
    ],
)
def test_unknown_keys_and_sections_name_the_file_and_key(tmp_path: Path, text: str, names: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(path) in err.value.message
    for name in names:
        assert name in err.value.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[server]\nmax_message_bytes = "1MiB"\n', "must be an integer"),
        ("[server]\nrequire_client_auth = 1\n", "must be true or false"),
        ("[nodes]\ninterval_seconds = true\n", "must be an integer"),
        ('[store]\nkind = "mysql"\n', "kind 'mysql' is unknown"),
        ('[store]\nkind = "postgres"\n', "needs dsn"),
        ('[server]\nlisten = "7443"\n', "HOST:PORT"),
        ('[server]\ntls_cert = "a.pem"\n', "set together"),
        ('[server]\nclient_ca = "ca.pem"\n', "client_ca needs tls_cert"),
        ("[server]\nrequire_client_auth = true\n", "require_client_auth needs"),
        ('[server]\nquery_clients = ["dashboard"]\n', "query_clients needs require_client_auth = true"),
        ("[server]\nquery_clients = [1]\n", "must be an array of strings"),
        (
            '[server]\ntls_cert = "a.pem"\ntls_key = "a.key"\nclient_ca = "ca.pem"\n',
            "client_ca has no effect without require_client_auth = true",
        ),
        ("[server]\nmax_message_bytes = 0\n", "greater than 0"),
        ("[nodes]\nstale_intervals = 0\n", "greater than 0"),
        ("[server]\nstream_idle_timeout_seconds = 0\n", "greater than 0"),
        ("[server]\nfirst_message_seconds = 0\n", "first_message_seconds must be greater than 0"),
        ("[server]\nmax_streams = 0\n", "max_streams must be greater than 0"),
        ("[server]\nmax_streams_per_peer = -1\n", "max_streams_per_peer must be greater than 0"),
        ("[server]\nunary_workers = 0\n", "unary_workers must be greater than 0"),
        ("[server]\nmax_devices_per_envelope = 0\n", "max_devices_per_envelope must be greater than 0"),
        ("[server]\nnode_envelopes_per_minute = -1\n", "node_envelopes_per_minute must not be negative"),
        ("[server]\nnode_bytes_per_minute = -1\n", "node_bytes_per_minute must not be negative"),
        ("[policy]\nrefresh_seconds = -1\n", "[policy] refresh_seconds must not be negative"),
        ("[server]\nkeepalive_time_seconds = 10000000000\n", "keepalive_time_seconds must be at most 2147483"),
        ("[server]\nmax_message_bytes = 1099511627776\n", "max_message_bytes must be at most 2147483647"),
        ("[server]\nmax_future_skew_seconds = 1000000000000000\n", "must be at most"),  # timedelta overflow
        ("[nodes]\ninterval_seconds = 1000000000000\n", "must be at most"),
        ("[server\n", "not valid TOML"),
        ('[enrollment]\nlisten = "0.0.0.0:7444"\n', "listen needs [server] tls_cert"),
        ('[enrollment]\nlisten = "7444"\n', "HOST:PORT"),
        ("[enrollment]\nissue_client_certificates = true\n", "needs [server] require_client_auth = true"),
        ("[enrollment]\ncertificate_minutes = 1\n", "between 5 and 43200"),
        ("[enrollment]\ncertificate_minutes = 50000\n", "between 5 and 43200"),
    ],
)
def test_bad_values_are_config_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert fragment in err.value.message
    assert str(path) in err.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [("GPUCENSUS_SERVER_MAX_WORKERS", "many"), ("GPUCENSUS_SERVER_REQUIRE_CLIENT_AUTH", "maybe")],
)
def test_bad_environment_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(env={name: value})


def test_a_missing_file_and_an_unknown_flag_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match=r"store\.colour"):
        load_config(env={}, overrides={"store": {"colour": "red"}})


def test_the_example_config_loads_and_documents_every_key() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "collector.example.toml"
    config = load_config(example, env={})
    assert config.server.listen == "0.0.0.0:7443" and config.store.kind == "sqlite"
    with example.open("rb") as handle:
        document = tomllib.load(handle)
    for section, kind in _SECTIONS.items():
        for f in dataclasses.fields(kind):
            assert f.name in document.get(section, {}), f"[{section}] {f.name} is not in {example.name}"


def test_issued_client_certificates_stand_in_for_client_ca(tmp_path: Path) -> None:
    """mTLS with the enrolment CA as the only client trust: client_ca may then be empty."""
    path = write(
        tmp_path,
        '[server]\ntls_cert = "s.pem"\ntls_key = "s.key"\nrequire_client_auth = true\n'
        '[enrollment]\nlisten = "127.0.0.1:7444"\nissue_client_certificates = true\nca_cert = "pki/ca.pem"\n',
    )
    config = load_config(path, env={})
    assert config.enrollment.issue_client_certificates
    assert config.enrollment.ca_paths(config.store.data_dir) == (
        tmp_path / "pki/ca.pem",
        Path(config.store.data_dir) / "enrolment-ca.key",
    )
