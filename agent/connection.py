"""The agent's channels to the collector: the main one, and the enrolment one when it differs.

Enroll (and IssueCertificate) go to `collector.enroll_address` when it is set, or whenever the agent gets its
client certificate from the collector (it has none to present yet), over TLS without a client certificate;
otherwise over the main channel, as before. With `collector.request_certificate`, the main channel is (re)opened
with the issued certificate, which is renewed before it expires (`agent.certificates`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import grpc
from gpucensus.agent.certificates import CertificateUnavailable, renewal_reason, request_certificate, utc_now
from gpucensus.agent.config import AgentConfig
from gpucensus.agent.keys import NodeKey
from gpucensus.agent.uplink import RetryableError, Uplink, open_channel

log = logging.getLogger(__name__)


class Connection:
    def __init__(self, config: AgentConfig, key: NodeKey, clock: Callable[[], datetime] = utc_now) -> None:
        self._config, self._key, self._clock = config, key, clock
        self._main: tuple[grpc.Channel, Uplink] | None = None
        self._enrolment: tuple[grpc.Channel, Uplink] | None = None

    @property
    def separate_enrolment(self) -> bool:
        return bool(self._config.collector_enroll_address or self._config.collector_request_certificate)

    def enrolment_uplink(self) -> Uplink:
        """Where to enroll."""
        if not self.separate_enrolment:
            return self.uplink()
        return self._enrolment_pair()[1]

    def uplink(self) -> Uplink:
        """The main uplink, with a fresh client certificate first when one is due."""
        if self._config.collector_request_certificate:
            self._renew_if_due()
        if self._main is None:
            channel = open_channel(self._config)
            self._main = channel, Uplink(channel, self._config.collector_timeout_seconds)
        return self._main[1]

    def close(self) -> None:
        for pair in (self._main, self._enrolment):
            if pair is not None:
                pair[0].close()
        self._main = self._enrolment = None

    def _enrolment_pair(self) -> tuple[grpc.Channel, Uplink]:
        if self._enrolment is None:
            channel = open_channel(self._config, enrolment=True)
            self._enrolment = channel, Uplink(channel, self._config.collector_timeout_seconds)
        return self._enrolment

    def _renew_if_due(self) -> None:
        cert_path, key_path = self._config.issued_certificate_files
        reason, usable = renewal_reason(cert_path, key_path, self._clock())
        if not reason:
            return
        log.info("requesting a client certificate from the collector: %s", reason)
        try:
            request_certificate(
                self._enrolment_pair()[0], self._key, cert_path, key_path, self._config.collector_timeout_seconds
            )
        except CertificateUnavailable as err:
            if not usable:
                raise RetryableError(str(err), grpc.StatusCode.UNAVAILABLE) from None
            log.warning("%s; the current client certificate is used meanwhile", err)
            return
        if self._main is not None:  # reconnect with the new certificate
            self._main[0].close()
            self._main = None
