"""The agent's configuration: one TOML file, overridden by environment variables, overridden by flags.

Precedence: flags > environment (`GPUCENSUS_AGENT_<SECTION>_<KEY>`) > file > defaults. An unknown section
or key in the file is a `ConfigError` naming the file and the key; so is a value of the wrong type. Relative
paths in the file are resolved against the file's directory; relative paths from flags or the environment
against the working directory. `deploy/agent.example.toml` documents every key.
"""

from __future__ import annotations

import contextlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpucensus.common.errors import ConfigError

ENV_PREFIX = "GPUCENSUS_AGENT_"
MIB = 1024 * 1024

# section -> key -> default. The dataclass field is "<section>_<key>"; the type of the default is the type.
SCHEMA: dict[str, dict[str, Any]] = {
    "collector": {
        "address": "127.0.0.1:7443",
        "tls_ca_file": "",
        "tls_cert_file": "",
        "tls_key_file": "",
        "tls_server_name": "",
        "enroll_address": "",
        "request_certificate": False,
        "timeout_seconds": 10.0,
        "retry_initial_seconds": 1.0,
        "retry_max_seconds": 60.0,
        "log_vkey": "",
    },
    "node": {"id": "", "site": "", "key_path": "", "state_dir": "/var/lib/gpucensus"},
    "enrollment": {"token": "", "token_file": ""},
    "spool": {"path": "", "max_bytes": 64 * MIB, "keep_delivered": 100},
    "schedule": {"interval_seconds": 60.0, "jitter_fraction": 0.1, "full_every_seconds": 3600.0},
    "inventory": {"backend": "nvml", "profile": "", "sysfs_root": ""},
    "metrics": {"listen": ""},
    "location": {"interval_seconds": 3600.0, "samples": 5, "timeout_seconds": 10.0},
}
PATH_KEYS = {
    "collector.tls_ca_file",
    "collector.tls_cert_file",
    "collector.tls_key_file",
    "node.key_path",
    "node.state_dir",
    "enrollment.token_file",
    "spool.path",
    "inventory.sysfs_root",
}


@dataclass(frozen=True)
class AgentConfig:
    collector_address: str
    collector_tls_ca_file: str
    collector_tls_cert_file: str
    collector_tls_key_file: str
    collector_tls_server_name: str
    collector_enroll_address: str
    collector_request_certificate: bool
    collector_timeout_seconds: float
    collector_retry_initial_seconds: float
    collector_retry_max_seconds: float
    collector_log_vkey: str
    node_id: str
    node_site: str
    node_key_path: str
    node_state_dir: str
    enrollment_token: str
    enrollment_token_file: str
    spool_path: str
    spool_max_bytes: int
    spool_keep_delivered: int
    schedule_interval_seconds: float
    schedule_jitter_fraction: float
    schedule_full_every_seconds: float
    inventory_backend: str
    inventory_profile: str
    inventory_sysfs_root: str
    metrics_listen: str
    location_interval_seconds: float
    location_samples: int
    location_timeout_seconds: float
    source: str = "<defaults>"

    @property
    def key_path(self) -> Path:
        return Path(self.node_key_path or Path(self.node_state_dir) / "node.key")

    @property
    def spool_file(self) -> Path:
        return Path(self.spool_path or Path(self.node_state_dir) / "spool.db")

    @property
    def enrollment_file(self) -> Path:
        """Where the enrollment result is kept, next to the key, so enrollment happens once."""
        return self.key_path.with_name(self.key_path.name + ".enrollment.json")

    @property
    def tls_enabled(self) -> bool:
        return bool(self.collector_tls_ca_file or self.collector_tls_cert_file)

    @property
    def issued_certificate_files(self) -> tuple[Path, Path]:
        """Where a collector-issued client certificate and its TLS key are kept, next to the node key."""
        return (
            self.key_path.with_name(self.key_path.name + ".client.pem"),
            self.key_path.with_name(self.key_path.name + ".client.key"),
        )

    @property
    def client_certificate_files(self) -> tuple[str, str]:
        """The client certificate and key the channel presents: issued ones, configured ones, or none."""
        if self.collector_request_certificate:
            cert, key = self.issued_certificate_files
            return str(cert), str(key)
        return self.collector_tls_cert_file, self.collector_tls_key_file

    def read_token(self) -> str:
        """The enrollment token, inline or from `token_file` (stripped); empty if neither is set."""
        if self.enrollment_token:
            return self.enrollment_token.strip()
        if not self.enrollment_token_file:
            return ""
        try:
            return Path(self.enrollment_token_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(
                f"cannot read enrollment token file {self.enrollment_token_file}: {err.strerror}",
                hint="put the token from `gpucensus-collector token create` in it, or set enrollment.token",
            ) from err


def load(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Build the configuration from the file at `path` (optional), `env` and flag `overrides`.

    `overrides` maps "section.key" to a value (None means "flag not given"); `env` defaults to os.environ.
    """
    values: dict[str, Any] = {f"{s}.{k}": v for s, keys in SCHEMA.items() for k, v in keys.items()}
    origins: dict[str, str] = {}  # "section.key" -> where its value came from, for errors about one setting
    source = "<defaults>"
    if path is not None:
        source = str(path)
        from_file = _read_file(Path(path))
        values.update(from_file)
        origins |= dict.fromkeys(from_file, source)
    for dotted, value in _from_env(os.environ if env is None else env).items():
        values[dotted] = value
        origins[dotted] = f"environment {_env_name(dotted)}"
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if dotted not in values:
            raise ConfigError(f"unknown setting {dotted!r}")
        values[dotted] = _coerce(dotted, value, "command line")
        origins[dotted] = "command line"
    config = AgentConfig(**{d.replace(".", "_"): v for d, v in values.items()}, source=source)
    _validate(config, origins)
    return config


def _env_name(dotted: str) -> str:
    return f"{ENV_PREFIX}{dotted.replace('.', '_')}".upper()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as err:
        hint = "pass --config with an existing file"
        raise ConfigError(f"config file {path} not found", hint=hint) from err
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}", hint="the agent config is a UTF-8 TOML file") from err
    out: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{path}: unknown section [{section}]", hint=f"known sections: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a table ([{section}])")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"{path}: unknown key {dotted!r}",
                    hint=f"known keys in [{section}]: {', '.join(SCHEMA[section])}",
                )
            value = _coerce(dotted, value, str(path))
            if dotted in PATH_KEYS and value and not Path(value).is_absolute():
                value = str(path.parent.resolve() / value)
            out[dotted] = value
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        for key in keys:
            name = _env_name(f"{section}.{key}")
            if name in env:
                out[f"{section}.{key}"] = _coerce(f"{section}.{key}", env[name], f"environment {name}")
    return out


def _coerce(dotted: str, value: Any, where: str) -> Any:
    section, key = dotted.split(".", 1)
    kind = type(SCHEMA[section][key])
    if kind is str and isinstance(value, str):
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
    if kind in (int, float) and not isinstance(value, bool):
        number: int | float | None = None
        if isinstance(value, int) or (kind is float and isinstance(value, float)):
            number = kind(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = kind(value.strip())
        if number is not None and math.isfinite(number):  # TOML and float() accept inf and nan
            return number
    raise ConfigError(f"{where}: {dotted} must be {_type_name(kind)}, got {value!r}")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(kind, kind.__name__)


def _validate(config: AgentConfig, origins: Mapping[str, str]) -> None:
    where = config.source
    if ":" not in config.collector_address:
        address_from = origins.get("collector.address", "<defaults>")
        raise ConfigError(
            f"{address_from}: collector.address {config.collector_address!r} must be host:port",
            hint="add the collector's port, e.g. collector.example:7443",
        )
    checks = [
        (config.schedule_interval_seconds > 0, "schedule.interval_seconds must be > 0"),
        (0 <= config.schedule_jitter_fraction < 1, "schedule.jitter_fraction must be in [0, 1)"),
        (
            config.schedule_full_every_seconds >= 0,
            "schedule.full_every_seconds must be >= 0 (0: a full inventory every round)",
        ),
        (config.spool_max_bytes > 0, "spool.max_bytes must be > 0"),
        (config.location_interval_seconds >= 0, "location.interval_seconds must be >= 0 (0: no measurements)"),
        (1 <= config.location_samples <= 16, "location.samples must be 1..16"),
        (config.location_timeout_seconds > 0, "location.timeout_seconds must be > 0"),
        (config.spool_keep_delivered >= 0, "spool.keep_delivered must be >= 0"),
        (config.collector_timeout_seconds > 0, "collector.timeout_seconds must be > 0"),
        (config.collector_retry_initial_seconds > 0, "collector.retry_initial_seconds must be > 0"),
        (
            config.collector_retry_max_seconds >= config.collector_retry_initial_seconds,
            "collector.retry_max_seconds must be >= collector.retry_initial_seconds",
        ),
        (
            bool(config.collector_tls_cert_file) == bool(config.collector_tls_key_file),
            "collector.tls_cert_file and collector.tls_key_file must be set together",
        ),
        (
            not (config.enrollment_token and config.enrollment_token_file),
            "set enrollment.token or enrollment.token_file, not both",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{where}: {message}")
    if config.collector_request_certificate and not config.collector_tls_ca_file:
        raise ConfigError(
            f"{where}: collector.request_certificate needs collector.tls_ca_file",
            hint="the CA that signed the collector's server certificate: the certificate is requested over TLS",
        )
    if config.collector_request_certificate and config.collector_tls_cert_file:
        raise ConfigError(
            f"{where}: set collector.request_certificate or collector.tls_cert_file, not both",
            hint="an issued certificate is kept next to the node key (<key>.client.pem) and renewed by the agent",
        )
    if config.collector_enroll_address and ":" not in config.collector_enroll_address:
        raise ConfigError(
            f"{where}: collector.enroll_address {config.collector_enroll_address!r} must be host:port",
            hint="the collector's [enrollment] listen address, e.g. collector.example:7444",
        )
    if config.collector_tls_cert_file and not config.collector_tls_ca_file:
        raise ConfigError(
            f"{where}: collector.tls_cert_file is set but collector.tls_ca_file is not",
            hint="mutual TLS needs the CA that signed the collector's certificate",
        )
