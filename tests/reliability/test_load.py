"""Load: many concurrent sessions into the embedded default, nothing lost or doubled.

200 sessions at once, 5 messages each, every message with its own Message-ID, sent
with aiosmtplib over loopback to ``smtpkit run`` (one process, then two workers).
Every message that got its 250 must be in the Maildir's ``new/`` exactly once and
byte for byte as sent; ``tmp/`` must be empty afterwards.
"""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from .conftest import HOST, READY, Outgoing, Start, make_message, stored_by_id, tmp_files

SESSIONS = 200
PER_SESSION = 5
#: Client addresses the sessions come from: the default allows 50 connections per address.
SOURCES = [f"127.0.0.{n}" for n in range(1, 6)]


def sizes(index: int) -> int:
    """Mostly small messages; every 50th spans several of Mailbox's 256 KiB writes."""
    return 600 * 1024 if index % 50 == 0 else 300 + (index * 37) % 4000


async def one_session(port: int, messages: list[Outgoing], source: str) -> list[str]:
    """Send ``messages`` in one session from ``source``; the ids of those that got a 250."""
    accepted = []
    client = aiosmtplib.SMTP(
        hostname=HOST, port=port, timeout=READY, start_tls=False, source_address=(source, 0)
    )
    async with client:
        for message in messages:
            # aiosmtplib raises unless the message got its 250.
            errors, reply = await client.sendmail(
                "sender@example.com", ["rcpt@example.com"], message.data
            )
            assert not errors, (errors, reply)
            accepted.append(message.message_id)
    return accepted


async def send_all(port: int, batches: list[list[Outgoing]]) -> list[str]:
    """All sessions at once; the ids that got a 250."""
    results = await asyncio.gather(
        *(
            one_session(port, batch, SOURCES[index % len(SOURCES)])
            for index, batch in enumerate(batches)
        )
    )
    return [message_id for accepted in results for message_id in accepted]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_accepted_message_is_stored_once_and_intact(run_server: Start, workers: str) -> None:
    server = run_server("--workers", workers)
    batches = [
        [
            make_message(f"load-{session}-{n}@test", sizes(session * PER_SESSION + n))
            for n in range(PER_SESSION)
        ]
        for session in range(SESSIONS)
    ]
    accepted = asyncio.run(send_all(server.port, batches))

    assert len(accepted) == SESSIONS * PER_SESSION
    stored = stored_by_id(server.maildir)
    sent = {message.message_id: message.data for batch in batches for message in batch}
    doubled = [message_id for message_id, bodies in stored.items() if len(bodies) != 1]
    assert doubled == []
    assert sorted(stored) == sorted(accepted)
    changed = [message_id for message_id in accepted if stored[message_id][0] != sent[message_id]]
    assert changed == []
    assert tmp_files(server.maildir) == []
