from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AckStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_STATUS_UNSPECIFIED: _ClassVar[AckStatus]
    ACK_STATUS_ACCEPTED: _ClassVar[AckStatus]
    ACK_STATUS_REJECTED: _ClassVar[AckStatus]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_VIOLATION: _ClassVar[Severity]
ACK_STATUS_UNSPECIFIED: AckStatus
ACK_STATUS_ACCEPTED: AckStatus
ACK_STATUS_REJECTED: AckStatus
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_VIOLATION: Severity

class EnrollRequest(_message.Message):
    __slots__ = ("token", "node_id", "public_key_pem")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    token: str
    node_id: str
    public_key_pem: str
    def __init__(self, token: _Optional[str] = ..., node_id: _Optional[str] = ..., public_key_pem: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("keyid", "node_id", "site")
    KEYID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    keyid: str
    node_id: str
    site: str
    def __init__(self, keyid: _Optional[str] = ..., node_id: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class CertificateRequest(_message.Message):
    __slots__ = ("keyid", "csr_der", "signature")
    KEYID_FIELD_NUMBER: _ClassVar[int]
    CSR_DER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    keyid: str
    csr_der: bytes
    signature: bytes
    def __init__(self, keyid: _Optional[str] = ..., csr_der: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class CertificateResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_pem", "not_after")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    ca_pem: str
    not_after: str
    def __init__(self, certificate_pem: _Optional[str] = ..., ca_pem: _Optional[str] = ..., not_after: _Optional[str] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("dsse",)
    DSSE_FIELD_NUMBER: _ClassVar[int]
    dsse: bytes
    def __init__(self, dsse: _Optional[bytes] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("rule_id", "severity", "subject", "message")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    severity: Severity
    subject: str
    message: str
    def __init__(self, rule_id: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., subject: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("keyid", "sequence", "status", "log_index", "duplicate", "findings", "checkpoint")
    KEYID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    keyid: str
    sequence: int
    status: AckStatus
    log_index: int
    duplicate: bool
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    checkpoint: bytes
    def __init__(self, keyid: _Optional[str] = ..., sequence: _Optional[int] = ..., status: _Optional[_Union[AckStatus, str]] = ..., log_index: _Optional[int] = ..., duplicate: bool = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., checkpoint: _Optional[bytes] = ...) -> None: ...

class Totals(_message.Message):
    __slots__ = ("gpus", "tpp", "unaccounted")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    TPP_FIELD_NUMBER: _ClassVar[int]
    UNACCOUNTED_FIELD_NUMBER: _ClassVar[int]
    gpus: int
    tpp: int
    unaccounted: int
    def __init__(self, gpus: _Optional[int] = ..., tpp: _Optional[int] = ..., unaccounted: _Optional[int] = ...) -> None: ...

class EccnTotals(_message.Message):
    __slots__ = ("gpus", "tpp")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    TPP_FIELD_NUMBER: _ClassVar[int]
    gpus: int
    tpp: int
    def __init__(self, gpus: _Optional[int] = ..., tpp: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "keyid", "last_sequence", "last_attested", "stale", "revoked", "gpus")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KEYID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTESTED_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    keyid: str
    last_sequence: int
    last_attested: str
    stale: bool
    revoked: bool
    gpus: int
    def __init__(self, node_id: _Optional[str] = ..., keyid: _Optional[str] = ..., last_sequence: _Optional[int] = ..., last_attested: _Optional[str] = ..., stale: bool = ..., revoked: bool = ..., gpus: _Optional[int] = ...) -> None: ...

class SiteStatus(_message.Message):
    __slots__ = ("site", "country", "entity", "nodes", "totals", "last_attested", "location")
    SITE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTESTED_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    site: str
    country: str
    entity: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    totals: Totals
    last_attested: str
    location: str
    def __init__(self, site: _Optional[str] = ..., country: _Optional[str] = ..., entity: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ..., totals: _Optional[_Union[Totals, _Mapping]] = ..., last_attested: _Optional[str] = ..., location: _Optional[str] = ...) -> None: ...

class GetSiteStatusRequest(_message.Message):
    __slots__ = ("site", "page_size", "page_token")
    SITE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    site: str
    page_size: int
    page_token: str
    def __init__(self, site: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetSiteStatusResponse(_message.Message):
    __slots__ = ("sites", "next_page_token")
    SITES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[SiteStatus]
    next_page_token: str
    def __init__(self, sites: _Optional[_Iterable[_Union[SiteStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CountryTotals(_message.Message):
    __slots__ = ("country", "sites", "totals", "by_eccn", "sites_by_location")
    class ByEccnEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EccnTotals
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EccnTotals, _Mapping]] = ...) -> None: ...
    class SitesByLocationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    BY_ECCN_FIELD_NUMBER: _ClassVar[int]
    SITES_BY_LOCATION_FIELD_NUMBER: _ClassVar[int]
    country: str
    sites: int
    totals: Totals
    by_eccn: _containers.MessageMap[str, EccnTotals]
    sites_by_location: _containers.ScalarMap[str, int]
    def __init__(self, country: _Optional[str] = ..., sites: _Optional[int] = ..., totals: _Optional[_Union[Totals, _Mapping]] = ..., by_eccn: _Optional[_Mapping[str, EccnTotals]] = ..., sites_by_location: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetCountryTotalsRequest(_message.Message):
    __slots__ = ("country",)
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    country: str
    def __init__(self, country: _Optional[str] = ...) -> None: ...

class GetCountryTotalsResponse(_message.Message):
    __slots__ = ("countries",)
    COUNTRIES_FIELD_NUMBER: _ClassVar[int]
    countries: _containers.RepeatedCompositeFieldContainer[CountryTotals]
    def __init__(self, countries: _Optional[_Iterable[_Union[CountryTotals, _Mapping]]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "log_vkey")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    LOG_VKEY_FIELD_NUMBER: _ClassVar[int]
    checkpoint: bytes
    log_vkey: str
    def __init__(self, checkpoint: _Optional[bytes] = ..., log_vkey: _Optional[str] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("log_index", "tree_size")
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    log_index: int
    tree_size: int
    def __init__(self, log_index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("log_index", "tree_size", "hashes")
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    log_index: int
    tree_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, log_index: _Optional[int] = ..., tree_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("old_size", "new_size")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListLandmarksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Landmark(_message.Message):
    __slots__ = ("name", "address", "public_key_pem")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    public_key_pem: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., public_key_pem: _Optional[str] = ...) -> None: ...

class ListLandmarksResponse(_message.Message):
    __slots__ = ("landmarks",)
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    landmarks: _containers.RepeatedCompositeFieldContainer[Landmark]
    def __init__(self, landmarks: _Optional[_Iterable[_Union[Landmark, _Mapping]]] = ...) -> None: ...
