"""What one benchmark run is told: sizes and counts, rounds, servers, CPUs, log file."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import IO

MIB = 1024 * 1024
SECTIONS = (
    "throughput",
    "bigmsg",
    "idle",
    "stall",
    "pipelined",
    "app",
    "durable",
    "tls",
    "cpu",
    "construct",
    "bdat",
)
SERVERS = ("smtpkit", "aiosmtpd", "smtp-sink", "ceiling")
LOOPS = ("asyncio", "uvloop")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Sizes and counts of every benchmark; :data:`FULL` and :data:`QUICK` are the presets."""

    rounds: int
    #: smtp-source messages per measurement, reusing connections (-d) / one per connection.
    reuse_messages: int
    disconnect_messages: int
    sessions: int = 20
    message_size: int = 1024
    big_size: int = 100 * MIB
    idle_sessions: int = 15_000
    stall_uploaders: int = 10
    stall_upload_size: int = 20 * MIB
    stall_probes: int = 200
    #: The probe stops after this long even if not all its messages went through.
    stall_probe_seconds: float = 30.0
    #: Pipelining client: messages per measurement, client processes, sessions per process.
    pipelined_messages: int = 20_000
    pipelined_processes: int = 2
    pipelined_connections: int = 10
    #: Durable delivery: smtp-source sessions and messages into a Maildir.
    durable_sessions: int = 100
    durable_messages: int = 5_000
    #: TLS: STARTTLS sessions (connect, EHLO, STARTTLS, EHLO, QUIT) and messages over TLS.
    tls_handshakes: int = 2_000
    tls_messages: int = 10_000


FULL = Settings(rounds=3, reuse_messages=20_000, disconnect_messages=5_000)
QUICK = Settings(
    rounds=1,
    reuse_messages=2_000,
    disconnect_messages=1_000,
    big_size=20 * MIB,
    idle_sessions=2_000,
    stall_probes=30,
    stall_probe_seconds=5.0,
    pipelined_messages=10_000,
    durable_messages=1_000,
    tls_handshakes=500,
    tls_messages=5_000,
)


def with_rounds(settings: Settings, rounds: int | None) -> Settings:
    """Return ``settings`` with its round count replaced when ``rounds`` is given.

    Raises:
        ValueError: If ``rounds`` is below 1.
    """
    if rounds is None:
        return settings
    if rounds < 1:
        raise ValueError(f"--rounds: got {rounds}, expected 1 or more")
    return dataclasses.replace(settings, rounds=rounds)


@dataclass(frozen=True)
class Variant:
    """One server under test: which implementation, on which loop, with which handler."""

    server: str
    loop: str = "asyncio"
    handler: str = "sink"

    @property
    def label(self) -> str:
        """A short name such as ``smtpkit/uvloop/spool`` (smtp-sink has no loop)."""
        if self.server == "smtp-sink":
            return "smtp-sink"
        parts = [self.server, self.loop]
        if self.handler != "sink":
            parts.append(self.handler)
        return "/".join(parts)


@dataclass
class Context:
    """Everything a section needs to run its measurements."""

    settings: Settings
    servers: tuple[str, ...]
    loops: tuple[str, ...]
    log: IO[bytes]
    server_cpu: int | None
    client_cpu: int | None
    spool_dir: str
    smtp_source: str
    smtp_sink: str

    def python_variants(self, handlers: tuple[str, ...] = ("sink",)) -> list[Variant]:
        """The Python servers to compare, loop by loop, in interleaving order."""
        variants = []
        for loop in self.loops:
            for handler in handlers:
                for server in self.servers:
                    if server in ("smtp-sink", "ceiling") or (
                        server == "aiosmtpd" and handler == "spool"
                    ):
                        continue
                    variants.append(Variant(server, loop, handler))
        return variants

    def variants(self, handlers: tuple[str, ...] = ("sink",)) -> list[Variant]:
        """The Python servers, then smtp-sink (the C reference) when it is selected."""
        variants = self.python_variants(handlers)
        if "smtp-sink" in self.servers:
            variants.append(Variant("smtp-sink", "-"))
        return variants

    def throughput_variants(self) -> list[Variant]:
        """:meth:`variants`, then the ceiling server on each loop when it is selected."""
        ceiling = [Variant("ceiling", loop) for loop in self.loops if "ceiling" in self.servers]
        return self.variants() + ceiling


def pick_cpus(pin: bool) -> tuple[int | None, int | None]:
    """Return (server CPU, client CPU): two different CPUs when pinning and there are two."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[0]
