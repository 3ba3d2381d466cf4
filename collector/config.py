"""Collector configuration: TOML file, `GPUCENSUS_<SECTION>_<KEY>` environment, flags; unknown keys are errors.

Precedence: flags (`overrides`) > environment > file > defaults. Relative paths in the file are relative to the
file's directory. Example:

    [store]
    kind = "sqlite"            # or "postgres"
    data_dir = "/var/lib/gpucensus-collector"
    # dsn = "host=db dbname=gpucensus user=gpucensus"   (postgres)
    [server]
    listen = "0.0.0.0:7443"
    tls_cert = "server.pem"
    tls_key = "server.key"
    client_ca = "nodes-ca.pem"
    require_client_auth = true
    [policy]
    pack = "us-2026"           # the default (collector.policy.packs.DEFAULT_PACK)
    refresh_seconds = 3600     # full re-evaluation of the compliance state (a safety net; 0 = never)
    [nodes]
    interval_seconds = 60
    [metrics]
    listen = "127.0.0.1:9465"  # Prometheus endpoint; empty = none
    [log]
    origin = "census.example.org/log"   # the checkpoints' origin line; default: the log key's name
    checkpoint_interval = 1            # seconds between signed checkpoints, at most
    [dashboard]
    listen = "127.0.0.1:8443"  # read-only web dashboard; empty = none (see collector/dashboard)
    [retention]
    compact_days = 90          # compact statements older than this are pruned; 0 = never
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpucensus.collector.dashboard.access import check_password_hash, is_loopback
from gpucensus.collector.errors import ConfigError
from gpucensus.collector.policy.packs import DEFAULT_PACK

ENV_PREFIX = "GPUCENSUS_"
MAX_C_INT = 2**31 - 1  # grpc channel options are C ints
MAX_SECONDS = MAX_C_INT // 1000  # grpc takes times in milliseconds: about 24 days
_PATH_KEYS = {("store", "data_dir"), ("store", "path"), ("server", "tls_cert"), ("server", "tls_key"),
              ("server", "client_ca"), ("enrollment", "ca_cert"), ("enrollment", "ca_key"), ("log", "key_file"),
              ("log", "checkpoint_file"), ("dashboard", "tls_cert"), ("dashboard", "tls_key"),
              ("dashboard", "client_ca")}  # fmt: skip


@dataclass(frozen=True)
class StoreConfig:
    kind: str = "sqlite"
    data_dir: str = "/var/lib/gpucensus-collector"
    path: str = ""  # sqlite file; default <data_dir>/collector.db
    dsn: str = ""  # postgres
    schema: str = ""  # postgres schema (search_path); default: the DSN's

    def open_options(self) -> dict[str, Any]:
        """Keyword options for `collector.store.open_store(self.kind, ...)`."""
        if self.kind == "postgres":
            return {"dsn": self.dsn, "schema": self.schema or None}
        return {"path": self.path} if self.path else {"data_dir": self.data_dir}


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:7443"  # host:port; port 0 = any free port
    tls_cert: str = ""  # PEM server certificate chain; tls_cert + tls_key set = TLS; empty = plaintext
    tls_key: str = ""
    client_ca: str = ""  # CA of node client certificates; only with require_client_auth (gRPC ignores it otherwise)
    require_client_auth: bool = False  # refuse plaintext and clients without a certificate from client_ca
    max_message_bytes: int = 1024 * 1024
    keepalive_time_seconds: int = 60  # the server pings an idle connection this often
    keepalive_timeout_seconds: int = 20  # and drops it if the ping is not answered within this
    min_ping_interval_seconds: int = 30  # the fastest client keepalive the server tolerates
    max_future_skew_seconds: int = 300  # an attestation stamped further in the future is rejected
    max_backdate_seconds: int = 7 * 86400  # one stamped this long before its key's enrolment is rejected
    shutdown_grace_seconds: int = 10  # SIGTERM: time given to in-flight streams to finish
    stream_idle_timeout_seconds: int = 30  # a Report stream silent this long after an ack is closed
    first_message_seconds: int = 5  # a Report stream that sends nothing this long after it opened is closed
    max_streams: int = 1000  # Report streams open at once, in total; beyond: RESOURCE_EXHAUSTED (retry later)
    max_streams_per_peer: int = 32  # Report streams open at once per client: its certificate (mTLS), else its IP
    max_workers: int = 16  # threads judging and storing envelopes (streams themselves cost no thread)
    unary_workers: int = 4  # threads of their own for Enroll and the queries (health needs none)
    max_devices_per_envelope: int = 4096  # an envelope listing more devices is refused (INVALID_ARGUMENT)
    node_envelopes_per_minute: int = 600  # per key; over it RESOURCE_EXHAUSTED with retry advice; 0 = no limit
    node_bytes_per_minute: int = 64 * 1024 * 1024  # per key, envelope bytes; 0 = no limit
    # with require_client_auth: client certificate common names allowed to call the query RPCs (GetSiteStatus,
    # GetCountryTotals), e.g. ["dashboard", "compliance-cli"]; node certificates are refused (a node must not read
    # the whole inventory). Without require_client_auth the query RPCs are open to every client.
    query_clients: tuple[str, ...] = ()
    # several `serve` processes on one host share `listen` (SO_REUSEPORT: the kernel spreads connections over
    # them), each with its own store connections and pipeline, to use more than one core; every one of them must
    # set it. false: a second process on the port is an error. docs/operators.md, "Several collectors"
    reuse_port: bool = False


@dataclass(frozen=True)
class PolicyConfig:
    pack: str = DEFAULT_PACK  # a shipped pack name or a path to a pack file
    # the collector re-evaluates its whole inventory this often (~2.3 s of one core at 20,000 nodes): a safety net,
    # since registry writes, a new day and the sites other collectors sharing the database changed are noticed
    # within a second anyway. 0 = never
    refresh_seconds: int = 3600


@dataclass(frozen=True)
class NodesConfig:
    interval_seconds: int = 60  # expected attestation interval (staleness)
    stale_intervals: int = 3  # a node silent for this many intervals is reported stale


@dataclass(frozen=True)
class RetentionConfig:
    # compact statements ("inventory unchanged") older than this are deleted by `gpucensus-collector prune` (and
    # daily by `serve`); 0 = keep them forever. Full inventories, log hashes, findings and evidence are never
    # pruned: the five-year EAR recordkeeping period (15 CFR 762.6) applies to what an inventory records
    compact_days: int = 90


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = ""  # host:port of the Prometheus endpoint (e.g. "127.0.0.1:9465"); empty = no endpoint
    refresh_seconds: int = 10  # store figures (nodes, GPUs, TPP) are read at most this often; 0 = every scrape


@dataclass(frozen=True)
class LogConfig:
    # the checkpoints' origin line, and the log key's name when the key is generated; "" = the key's name (a new
    # key is named "<this host's name>/gpucensus-log"). Collectors sharing a database share one log: one key file.
    origin: str = ""
    key_file: str = ""  # the log's Ed25519 signing key (signed-note key string); default <data_dir>/log.key
    checkpoint_file: str = ""  # the last checkpoint this collector signed; default <data_dir>/checkpoint
    checkpoint_interval: float = 1.0  # seconds: a new checkpoint is signed at most this often
    integrate: bool = True  # integrate and sign in the background (false: sequence only, e.g. to measure)
    witness_keys: tuple[str, ...] = ()  # verifier keys (vkey strings) whose cosignatures `log cosign` accepts

    def key_path(self, data_dir: str) -> Path:
        return Path(self.key_file or Path(data_dir) / "log.key")

    def checkpoint_path(self, data_dir: str) -> Path:
        return Path(self.checkpoint_file or Path(data_dir) / "checkpoint")


@dataclass(frozen=True)
class EnrollmentConfig:
    # host:port of the enrolment listener: TLS with the server certificate but no client certificate asked, serving
    # only Enroll and IssueCertificate (and health), for agents that have no client certificate yet; empty = none
    listen: str = ""
    # issue short-lived client certificates (CN = node id) to enrolled keys from the collector's enrolment CA;
    # needs require_client_auth, and the main listener then trusts that CA (besides client_ca, if set)
    issue_client_certificates: bool = False
    ca_cert: str = ""  # enrolment CA certificate; default <data_dir>/enrolment-ca.pem (made on first start)
    ca_key: str = ""  # its private key, mode 0600; default <data_dir>/enrolment-ca.key
    certificate_minutes: int = 1440  # lifetime of an issued certificate; agents renew after two thirds of it
    name: str = "gpucensus"  # installation name in the CA's subject

    def ca_paths(self, data_dir: str) -> tuple[Path, Path]:
        return Path(self.ca_cert or Path(data_dir) / "enrolment-ca.pem"), Path(
            self.ca_key or Path(data_dir) / "enrolment-ca.key"
        )


@dataclass(frozen=True)
class LocationSection:
    """Location evidence (docs/compliance.md): how a landmark's round-trip time becomes a distance bound."""

    fibre_speed_km_per_s: int = 199_862  # 2/3 c, light in glass of refractive index 1.5; up to c = 299_792
    processing_allowance_us: int = 20  # taken off each round trip: below the smallest node overhead measured
    border_margin_km: int = 20  # "in-country" only when the measured region keeps this clear of the border
    max_age_seconds: int = 7200  # a measurement older than this when it arrives is rejected
    stale_after_seconds: int = 10800  # no valid measurement for this long: location.stale


@dataclass(frozen=True)
class DashboardConfig:
    """The read-only web dashboard (`collector.dashboard`). Off unless `listen` is set; an address other than
    loopback needs TLS and an access rule: client certificates (`client_ca` + `clients`) or basic auth."""

    listen: str = ""  # host:port, e.g. "127.0.0.1:8443" (port 0 = any); empty = no dashboard
    tls_cert: str = ""  # PEM certificate chain; with tls_key: HTTPS
    tls_key: str = ""
    client_ca: str = ""  # CA of client certificates: every client must present one it signed
    clients: tuple[str, ...] = ()  # with client_ca: the certificate common names allowed in
    basic_auth_user: str = ""  # with TLS: HTTP basic auth, this user and ...
    basic_auth_password_hash: str = ""  # ... this hash (`gpucensus-collector dashboard-password`)


@dataclass(frozen=True)
class CollectorConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    nodes: NodesConfig = field(default_factory=NodesConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    enrollment: EnrollmentConfig = field(default_factory=EnrollmentConfig)
    location: LocationSection = field(default_factory=LocationSection)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    source: str = ""  # the config file read, if any


_SECTIONS: dict[str, type[Any]] = {
    "store": StoreConfig, "server": ServerConfig, "policy": PolicyConfig, "nodes": NodesConfig,
    "metrics": MetricsConfig, "enrollment": EnrollmentConfig, "location": LocationSection, "log": LogConfig,
    "dashboard": DashboardConfig, "retention": RetentionConfig,
}  # fmt: skip


def _fields(section: str) -> dict[str, type]:
    return {f.name: type(f.default) for f in dataclasses.fields(_SECTIONS[section])}


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    values: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]", hint=f"known: {', '.join(_SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a table ([{section}])")
        known = _fields(section)
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown key {key!r} in [{section}]",
                                  hint=f"known keys: {', '.join(known)}")  # fmt: skip
            if not _type_ok(value, known[key]):
                raise ConfigError(f"{path}: [{section}] {key} must be {_type_name(known[key])}, got {value!r}")
            if (section, key) in _PATH_KEYS and value:
                value = str(path.parent / value)
            if isinstance(value, list):
                value = tuple(value)
            values.setdefault(section, {})[key] = value
    return values


def _type_ok(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is tuple:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, expected)


def _type_name(expected: type) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "an array of strings"}
    return names[expected]


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS:
        for key, expected in _fields(section).items():
            name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            if name in env:
                values.setdefault(section, {})[key] = _parse_env(name, env[name], expected)
    return values


def _parse_env(name: str, raw: str, expected: type) -> Any:
    text = raw.strip()
    if expected is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
    elif expected is int:
        try:
            return int(text)
        except ValueError:
            pass
    elif expected is float:
        try:
            return float(text)
        except ValueError:
            pass
    elif expected is tuple:  # comma-separated: GPUCENSUS_SERVER_QUERY_CLIENTS=dashboard,compliance-cli
        return tuple(item.strip() for item in text.split(",") if item.strip())
    else:
        return raw
    raise ConfigError(f"environment variable {name}={raw!r} must be {_type_name(expected)}")


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> CollectorConfig:
    """Build the config from defaults, the file, the environment and flag `overrides` ({section: {key: v}})."""
    layers = [_read_file(Path(path)) if path else {}, _from_env(os.environ if env is None else env)]
    flags: dict[str, dict[str, Any]] = {}
    for section, table in (overrides or {}).items():
        known = _fields(section) if section in _SECTIONS else {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"unknown setting {section}.{key}")
            if value is not None:
                flags.setdefault(section, {})[key] = value
    layers.append(flags)
    merged: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    for layer in layers:
        for section, table in layer.items():
            merged[section].update(table)
    config = CollectorConfig(**{s: _SECTIONS[s](**merged[s]) for s in _SECTIONS}, source=str(path) if path else "")
    validate(config)
    return config


def validate(config: CollectorConfig) -> None:
    where = f"{config.source}: " if config.source else ""
    from gpucensus.collector.store import STORES  # late: only validation needs the registry of stores

    store, server, nodes = config.store, config.server, config.nodes
    if store.kind not in STORES:
        raise ConfigError(f"{where}[store] kind {store.kind!r} is unknown",
                          hint=f"use one of: {', '.join(sorted(STORES))}")  # fmt: skip
    if store.kind == "postgres" and not store.dsn:
        raise ConfigError(f'{where}[store] kind = "postgres" needs dsn', hint='e.g. dsn = "host=db dbname=x"')
    if store.kind == "sqlite" and not (store.path or store.data_dir):
        raise ConfigError(f"{where}[store] needs data_dir (or path) for sqlite")
    _check_listen(where, "server", server.listen, "0.0.0.0:7443")
    if config.metrics.listen:
        _check_listen(where, "metrics", config.metrics.listen, "127.0.0.1:9465")
    if config.metrics.refresh_seconds < 0:
        raise ConfigError(f"{where}[metrics] refresh_seconds must not be negative")
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError(f"{where}[server] tls_cert and tls_key must be set together")
    if server.client_ca and not server.tls_cert:
        raise ConfigError(f"{where}[server] client_ca needs tls_cert and tls_key (mTLS runs over TLS)")
    if server.client_ca and not server.require_client_auth:
        raise ConfigError(
            f"{where}[server] client_ca has no effect without require_client_auth = true",
            hint="gRPC does not even ask for a client certificate then: set require_client_auth = true for mutual "
            "TLS, or remove client_ca for plain TLS",
        )
    if server.query_clients and not server.require_client_auth:
        raise ConfigError(
            f"{where}[server] query_clients needs require_client_auth = true",
            hint="only a verified client certificate names who is querying; without mutual TLS queries are open",
        )
    issuing = config.enrollment.issue_client_certificates
    if server.require_client_auth and not (server.tls_cert and (server.client_ca or issuing)):
        raise ConfigError(
            f"{where}[server] require_client_auth needs tls_cert, tls_key and client_ca",
            hint="or [enrollment] issue_client_certificates = true: the collector's enrolment CA is then trusted",
        )
    _validate_enrollment(where, config)
    positive = ("max_message_bytes", "keepalive_time_seconds", "keepalive_timeout_seconds", "max_workers",
                "stream_idle_timeout_seconds", "first_message_seconds", "max_streams", "max_streams_per_peer",
                "unary_workers", "max_devices_per_envelope")  # fmt: skip
    for name in positive:
        if getattr(server, name) <= 0:
            raise ConfigError(f"{where}[server] {name} must be greater than 0")
    for name in ("min_ping_interval_seconds", "max_future_skew_seconds", "max_backdate_seconds",
                 "shutdown_grace_seconds", "node_envelopes_per_minute", "node_bytes_per_minute"):  # fmt: skip
        if getattr(server, name) < 0:
            raise ConfigError(f"{where}[server] {name} must not be negative")
    for section, settings in (("server", server), ("nodes", nodes)):
        for name, value in dataclasses.asdict(settings).items():
            limit = MAX_SECONDS if name.endswith("_seconds") else MAX_C_INT if name == "max_message_bytes" else None
            if limit is not None and value > limit:
                raise ConfigError(f"{where}[{section}] {name} must be at most {limit}", hint="grpc takes a 32-bit int")
    if nodes.interval_seconds <= 0 or nodes.stale_intervals <= 0:
        raise ConfigError(f"{where}[nodes] interval_seconds and stale_intervals must be greater than 0")
    if not config.policy.pack:
        raise ConfigError(f"{where}[policy] pack must not be empty")
    if config.policy.refresh_seconds < 0:
        raise ConfigError(f"{where}[policy] refresh_seconds must not be negative")
    if config.retention.compact_days < 0:
        raise ConfigError(f"{where}[retention] compact_days must not be negative (0 = keep compact statements)")
    _check_location(where, config.location)
    if config.dashboard.listen:
        _check_dashboard(where, config.dashboard)
    interval = config.log.checkpoint_interval
    if not 0 < interval <= MAX_SECONDS:  # also refuses NaN
        raise ConfigError(f"{where}[log] checkpoint_interval must be greater than 0 and at most {MAX_SECONDS}")
    if config.log.origin and not _printable_line(config.log.origin):
        raise ConfigError(f"{where}[log] origin must be one line of printable text without '+' or spaces",
                          hint='e.g. origin = "census.example.org/log"')  # fmt: skip


def _printable_line(text: str) -> bool:
    """A C2SP signed-note key name: printable, no spaces and no '+'."""
    return all(33 <= ord(c) < 127 and c != "+" for c in text)


def _check_dashboard(where: str, d: DashboardConfig) -> None:
    _check_listen(where, "dashboard", d.listen, "127.0.0.1:8443")
    if bool(d.tls_cert) != bool(d.tls_key):
        raise ConfigError(f"{where}[dashboard] tls_cert and tls_key must be set together")
    if (d.client_ca or d.clients) and not (d.client_ca and d.clients):
        raise ConfigError(
            f"{where}[dashboard] client_ca and clients go together",
            hint='clients lists the common names allowed in, e.g. clients = ["compliance-team"]',
        )
    if bool(d.basic_auth_user) != bool(d.basic_auth_password_hash):
        raise ConfigError(f"{where}[dashboard] basic_auth_user and basic_auth_password_hash must be set together")
    if d.basic_auth_password_hash:
        check_password_hash(d.basic_auth_password_hash, f"{where}[dashboard] basic_auth_password_hash")
    if (d.client_ca or d.basic_auth_user) and not d.tls_cert:
        raise ConfigError(f"{where}[dashboard] client certificates and basic auth need tls_cert and tls_key",
                          hint="a password or a client certificate is only worth something over TLS")  # fmt: skip
    if not is_loopback(d.listen.rpartition(":")[0]) and not (d.tls_cert and (d.client_ca or d.basic_auth_user)):
        raise ConfigError(
            f"{where}[dashboard] listen {d.listen!r} is not a loopback address: it needs tls_cert and tls_key, and "
            "client_ca + clients or basic_auth_user + basic_auth_password_hash",
            hint='or listen on loopback, e.g. listen = "127.0.0.1:8443", behind a proxy that authenticates',
        )


def _check_location(where: str, location: LocationSection) -> None:
    if not 1 <= location.fibre_speed_km_per_s <= 299_792:
        raise ConfigError(f"{where}[location] fibre_speed_km_per_s must be 1..299792 (the speed of light)")
    for name in ("processing_allowance_us", "border_margin_km", "max_age_seconds", "stale_after_seconds"):
        if getattr(location, name) < 0:
            raise ConfigError(f"{where}[location] {name} must not be negative")


def _validate_enrollment(where: str, config: CollectorConfig) -> None:
    enrollment, server = config.enrollment, config.server
    if enrollment.listen:
        _check_listen(where, "enrollment", enrollment.listen, "0.0.0.0:7444")
        if not server.tls_cert:
            raise ConfigError(
                f"{where}[enrollment] listen needs [server] tls_cert and tls_key",
                hint="the enrolment listener serves TLS with the server certificate (tokens must not travel in clear)",
            )
    if enrollment.issue_client_certificates and not server.require_client_auth:
        raise ConfigError(
            f"{where}[enrollment] issue_client_certificates needs [server] require_client_auth = true",
            hint="client certificates only mean something when the collector requires them",
        )
    if not 5 <= enrollment.certificate_minutes <= 43200:
        raise ConfigError(
            f"{where}[enrollment] certificate_minutes must be between 5 and 43200 (30 days)",
            hint="short-lived certificates are the revocation mechanism: the default is 1440 (one day)",
        )


def _check_listen(where: str, section: str, listen: str, example: str) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where}[{section}] listen {listen!r} must be HOST:PORT", hint=f"e.g. {example}")
