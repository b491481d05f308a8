"""Prometheus metrics of the SMTP server (the ``smtpkit[metrics]`` extra).

:func:`enable` subscribes a :class:`Metrics` to the connection events of
:mod:`smtpkit._events`; :func:`exposition` renders the Prometheus text format
that ``/metrics`` serves. Every name starts with ``smtpkit_``:

=========================================  =====================  ==================
metric                                     labels                 type
=========================================  =====================  ==================
``smtpkit_connections_total``                                     counter
``smtpkit_connections_open``                                      gauge
``smtpkit_commands_total``                 ``verb``, ``reply``    counter
``smtpkit_messages_accepted_total``                               counter
``smtpkit_messages_refused_total``         ``stage``              counter
``smtpkit_received_bytes_total``                                  counter
``smtpkit_auth_total``                     ``mechanism``,         counter
                                           ``result``
``smtpkit_tls_handshakes_total``                                  counter
``smtpkit_tls_failures_total``                                    counter
``smtpkit_limit_hits_total``               ``limit``              counter
``smtpkit_transaction_duration_seconds``                          histogram
``smtpkit_message_size_bytes``                                    histogram
=========================================  =====================  ==================

With several worker processes, prometheus-client's multiprocess mode adds
up the workers: the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` to a
directory it makes (and removes), each worker writes its values there, and
the worker serving ``/metrics`` reads them all.
"""

from __future__ import annotations

import os
from typing import Any

from ._events import Outcome, Record, Subscriber, subscribe

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_ENV", "Metrics", "available", "enable", "exposition"]

#: The environment variable of prometheus-client's multiprocess mode.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The content type of :func:`exposition`'s text.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SIZE_BUCKETS = (1e3, 4e3, 16e3, 64e3, 256e3, 1e6, 4e6, 16e6, 64e6)
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def available() -> bool:
    """Whether prometheus-client is installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class Metrics(Subscriber):
    """The counters, gauge and histograms, updated from connection events.

    Args:
        registry: the prometheus-client registry to put them in (a new one by default).
    """

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connections = Counter("smtpkit_connections", "Connections made.", registry=r)
        self.open = Gauge(
            "smtpkit_connections_open", "Connections open now.", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.commands = Counter(
            "smtpkit_commands", "Commands, by verb and class of the reply.", ["verb", "reply"],
            registry=r,
        )  # fmt: skip
        self.accepted = Counter("smtpkit_messages_accepted", "Messages accepted.", registry=r)
        self.refused = Counter(
            "smtpkit_messages_refused", "Refusals by stage (mail, rcpt, data).", ["stage"],
            registry=r,
        )  # fmt: skip
        self.bytes = Counter("smtpkit_received_bytes", "Message bytes received.", registry=r)
        self.auth_results = Counter(
            "smtpkit_auth", "AUTH exchanges, by mechanism and result.", ["mechanism", "result"],
            registry=r,
        )  # fmt: skip
        self.handshakes = Counter("smtpkit_tls_handshakes", "TLS handshakes done.", registry=r)
        self.tls_failures = Counter(
            "smtpkit_tls_failures", "STARTTLS handshakes failed.", registry=r
        )
        self.limits = Counter("smtpkit_limit_hits", "Refusals by a limit.", ["limit"], registry=r)
        self.duration = Histogram(
            "smtpkit_transaction_duration_seconds", "Seconds from MAIL to the end-of-data reply.",
            buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.size = Histogram(
            "smtpkit_message_size_bytes", "Sizes of the messages received.",
            buckets=_SIZE_BUCKETS, registry=r,
        )  # fmt: skip

    def connection_made(self, record: Record) -> None:
        self.connections.inc()
        self.open.inc()
        if record.tls is not None:
            self.handshakes.inc()

    def connection_lost(self, record: Record) -> None:
        self.open.dec()

    def command(self, record: Record, verb: str, reply_class: str) -> None:
        self.commands.labels(verb, reply_class).inc()

    def transaction(self, record: Record, outcome: Outcome) -> None:
        if outcome.accepted:
            self.accepted.inc()
        else:
            self.refused.labels(outcome.stage).inc()
        if outcome.stage == "data":
            self.bytes.inc(outcome.size)
            self.size.observe(outcome.size)
            if outcome.duration:
                self.duration.observe(outcome.duration)

    def auth(self, record: Record, mechanism: str, success: bool) -> None:
        self.auth_results.labels(mechanism, "success" if success else "failure").inc()

    def tls(self, record: Record, error: str | None) -> None:
        if error is None:
            self.handshakes.inc()
        else:
            self.tls_failures.inc()

    def limit(self, record: Record | None, name: str) -> None:
        self.limits.labels(name).inc()


_enabled: list[Metrics] = []


def enable() -> Metrics:
    """Start counting (once per process; later calls return the same :class:`Metrics`).

    Raises:
        ImportError: prometheus-client is not installed (``pip install 'smtpkit[metrics]'``).
    """
    if not _enabled:
        metrics = Metrics()
        subscribe(metrics)
        _enabled.append(metrics)
    return _enabled[0]


def exposition() -> bytes:
    """The metrics in the Prometheus text format: this process's, or every worker's."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
    return bytes(generate_latest(enable().registry))
