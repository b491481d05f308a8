"""The capture JSON API with httpx, against ``smtpkit run --http`` in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from capture.capture_server import Capture, message, wait_until

PNG = bytes(range(256)) * 40 + b"\x00\r\n\r\n.\r\n"


def stored(capture: Capture) -> list[Path]:
    return sorted(Path(capture.maildir, "new").iterdir())


def send_three(capture: Capture) -> list[str]:
    """Three messages, oldest first; their ids, oldest first."""
    subjects = ["Invoice 1", "Welcome aboard", "Password reset"]
    bodies = ["Your invoice.", "Hello and welcome.", "Click the secret-token link."]
    for subject, body in zip(subjects, bodies, strict=True):
        capture.send(
            message(subject=subject, text=body, to=f"{subject.split()[0]} <x@example.com>")
        )
    files = sorted(stored(capture), key=lambda p: p.stat().st_mtime_ns)
    # Distinct modification times, a second apart, so newest-first is well defined.
    for age, path in enumerate(reversed(files)):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - age * 10**9))
    by_subject = {
        path.read_bytes().split(b"Subject: ")[1].split(b"\n")[0]: path.name for path in files
    }
    return [by_subject[s.encode()] for s in subjects]


def test_list_is_newest_first_with_the_summary_fields(
    capture: Capture, client: httpx.Client
) -> None:
    ids = send_three(capture)
    page = client.get("/api/v1/messages").json()
    assert page["total"] == 3
    assert [m["id"] for m in page["messages"]] == ids[::-1]
    newest = page["messages"][0]
    assert newest["subject"] == "Password reset"
    assert newest["from"] == "Alice <alice@example.com>"
    assert newest["to"] == "Password <x@example.com>"
    assert newest["mail_from"] == "alice@example.com"
    assert newest["rcpt_tos"] == ["bob@example.com"]
    assert newest["size"] == (capture.maildir / "new" / ids[2]).stat().st_size
    assert newest["time"].endswith("+00:00")


def test_paging_and_filter(capture: Capture, client: httpx.Client) -> None:
    ids = send_three(capture)
    second = client.get("/api/v1/messages", params={"limit": 1, "offset": 1}).json()
    assert (second["total"], [m["id"] for m in second["messages"]]) == (3, [ids[1]])
    past_the_end = client.get("/api/v1/messages", params={"offset": 5}).json()
    assert (past_the_end["total"], past_the_end["messages"]) == (3, [])
    for query, expected in [
        ("welcome", [ids[1]]),  # subject and body, any case
        ("SECRET-TOKEN", [ids[2]]),  # body only
        ("invoice", [ids[0]]),  # subject and To
        ("alice@example.com", ids[::-1]),  # From
        ("nowhere", []),
    ]:
        found = client.get("/api/v1/messages", params={"q": query}).json()
        assert [m["id"] for m in found["messages"]] == expected, query


@pytest.mark.parametrize(
    ("params", "named"),
    [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"offset": "-1"}, "offset")],
)
def test_bad_paging_values_get_400_naming_them(
    client: httpx.Client, params: dict[str, str], named: str
) -> None:
    reply = client.get("/api/v1/messages", params=params)
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(f"{named}: {params[named]!r} is not an integer")


def test_one_message_raw_html_and_attachment(capture: Capture, client: httpx.Client) -> None:
    html = '<p>Hi <b>Bob</b></p><img src="http://127.0.0.1:9/x.png">'
    capture.send(message(subject="Report", html=html, attachment=("data.bin", PNG)))
    (path,) = stored(capture)
    detail = client.get(f"/api/v1/messages/{path.name}").json()
    assert detail["subject"] == "Report"
    assert detail["text"] == "Plain text body.\n"
    assert detail["html"] == html + "\n"
    assert ["Subject", "Report"] in detail["headers"]
    assert detail["attachments"] == [
        {
            "index": 0,
            "filename": "data.bin",
            "content_type": "application/octet-stream",
            "size": len(PNG),
        }
    ]
    raw = client.get(f"/api/v1/messages/{path.name}/raw")
    assert raw.headers["content-type"] == "message/rfc822"
    assert raw.content == path.read_bytes()
    body = client.get(f"/api/v1/messages/{path.name}/attachments/0")
    assert body.content == PNG
    assert body.headers["content-disposition"] == "attachment; filename*=UTF-8''data.bin"
    shown = client.get(f"/api/v1/messages/{path.name}/html")
    assert shown.text == html + "\n"
    assert shown.headers["content-security-policy"] == (
        "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'"
    )
    assert client.get(f"/api/v1/messages/{path.name}/attachments/1").status_code == 404


def test_the_page_and_its_script_are_served_under_a_csp(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/capture.js"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    script = client.get("/static/capture.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text


def test_delete_one_then_all(capture: Capture, client: httpx.Client) -> None:
    ids = send_three(capture)
    assert client.delete(f"/api/v1/messages/{ids[0]}").json() == {"deleted": 1}
    assert not (capture.maildir / "new" / ids[0]).exists()
    gone = client.get(f"/api/v1/messages/{ids[0]}")
    assert (gone.status_code, gone.json()) == (404, {"error": f"no message with id {ids[0]!r}"})
    assert client.delete(f"/api/v1/messages/{ids[0]}").status_code == 404
    assert [m["id"] for m in client.get("/api/v1/messages").json()["messages"]] == ids[:0:-1]
    assert client.delete("/api/v1/messages").json() == {"deleted": 2}
    assert stored(capture) == []
    assert client.get("/api/v1/messages").json()["total"] == 0


@pytest.mark.parametrize(
    "id", ["..", "...", ".hidden", "..%2F..%2Fsecret", "%2e%2e%2fsecret", "new%2F..%2F..%2Fsecret"]
)
def test_ids_that_leave_the_maildir_are_not_found(
    capture: Capture, client: httpx.Client, id: str
) -> None:
    capture.send(message())
    secret = capture.maildir.parent / "secret"
    secret.write_text("not mail")
    (capture.maildir / "new" / ".hidden").write_text("not listed")
    for method, suffix in [("GET", ""), ("GET", "/raw"), ("GET", "/html"), ("DELETE", "")]:
        reply = client.request(method, f"/api/v1/messages/{id}{suffix}")
        assert reply.status_code == 404, (method, id, suffix)
    assert secret.read_text() == "not mail"
    assert (capture.maildir / "new" / ".hidden").exists()
    assert client.get("/api/v1/messages").json()["total"] == 1


def test_events_announce_new_mail(capture: Capture, client: httpx.Client) -> None:
    with client.stream("GET", "/api/v1/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        assert next(lines) == "retry: 1000"
        assert next(lines) == "event: ready"
        capture.send(message(subject="Live"))
        while (line := next(lines)) != "event: change":
            assert line == "" or line.startswith(("data:", ":")), line


def test_mail_stored_by_another_process_is_listed(capture: Capture, client: httpx.Client) -> None:
    (capture.maildir / "tmp" / "1.M1P1.elsewhere").write_bytes(
        b"From: x@example.com\nSubject: Copied in\n\nBody\n"
    )
    os.rename(
        capture.maildir / "tmp" / "1.M1P1.elsewhere", capture.maildir / "new" / "1.M1P1.elsewhere"
    )
    wait_until(
        lambda: client.get("/api/v1/messages", params={"q": "copied"}).json()["total"] == 1,
        "the copied message in the list",
    )


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8026", "127.0.0.1.evil.example", ""]
)
def test_on_loopback_other_host_names_are_refused(client: httpx.Client, host: str) -> None:
    reply = client.get("/api/v1/messages", headers={"Host": host})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(f"Host {host!r} is not a loopback name")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "[::1]:8026", "127.0.0.1"])
def test_loopback_host_names_are_answered(client: httpx.Client, host: str) -> None:
    assert client.get("/api/v1/messages", headers={"Host": host}).status_code == 200
