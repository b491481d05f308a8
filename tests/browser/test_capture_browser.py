"""The capture page in a real browser: live list, sandboxed HTML, download, delete."""

from __future__ import annotations

import base64
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from capture.capture_server import Capture, message, running, wait_until

# A 1x1 PNG, shown inline through a data: URL (allowed) to prove images do render.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
ATTACHMENT = bytes(range(256)) * 64 + b"\r\n.\r\n\x00"
WAIT = 30.0


class _Remote(http.server.BaseHTTPRequestHandler):
    """The "remote" image host: counts every request it gets."""

    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PIXEL)))
        self.end_headers()
        self.wfile.write(PIXEL)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def remote() -> Iterator[tuple[str, list[str]]]:
    """An image server on 127.0.0.1: its base URL and the paths it was asked for."""
    _Remote.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Remote)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Remote.requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Capture]:
    (tmp_path / "server").mkdir()
    with running(tmp_path / "server") as server:
        yield server


def html_body(remote_url: str) -> str:
    data_url = "data:image/png;base64," + base64.b64encode(PIXEL).decode()
    return (
        "<h1 style='color:#1d4ed8'>Your order has shipped</h1>"
        "<p>Hello Bob, your parcel is on its way.</p>"
        f"<img id='remote' src='{remote_url}/tracking.png' width='1' height='1'>"
        f"<img id='inline' src='{data_url}'>"
        "<script>document.body.insertAdjacentHTML('beforeend', '<p id=ran>ran</p>')</script>"
    )


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("SMTPKIT_SCREENSHOTS")
    if folder:
        driver.save_screenshot(str(Path(folder, name)))


def test_mail_appears_opens_sandboxed_downloads_and_deletes(
    browser: Any, capture: Capture, remote: tuple[str, list[str]]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    remote_url, requests = remote
    wait = WebDriverWait(browser, WAIT)
    browser.get(capture.url)
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
    browser.execute_script("window.notReloaded = true")
    capture.send(message(subject="Earlier note", text="An older message."))
    capture.send(
        message(
            subject="Your order has shipped",
            text="Your parcel is on its way.",
            html=html_body(remote_url),
            attachment=("invoice.bin", ATTACHMENT),
        )
    )
    rows = wait.until(
        lambda d: (
            (r := d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) and len(r) == 2 and r
        )
    )
    assert rows[0].text.split("\n")[0].startswith("Alice <alice@example.com>")
    assert "Your order has shipped" in rows[0].text and "Earlier note" in rows[1].text
    assert browser.execute_script("return window.notReloaded") is True
    screenshot(browser, "capture-list.png")

    rows[0].click()
    wait.until(lambda d: d.find_element(By.ID, "view-subject").text == "Your order has shipped")
    frame = browser.find_element(By.ID, "html-frame")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    wait.until(
        lambda d: d.execute_script(
            "const i = document.getElementById('inline'); return i !== null && i.complete"
        )
    )
    assert browser.execute_script("return document.getElementById('inline').naturalWidth") == 1
    assert browser.execute_script("return document.getElementById('remote').naturalWidth") == 0
    assert browser.find_elements(By.ID, "ran") == []  # the message's script did not run
    browser.switch_to.default_content()
    screenshot(browser, "capture-message.png")
    assert requests == []
    # The "remote" host does answer: the image was blocked, not unreachable.
    import urllib.request

    with urllib.request.urlopen(f"{remote_url}/probe") as reply:
        assert reply.read() == PIXEL
    assert requests == ["/probe"]

    link = browser.find_element(By.CSS_SELECTOR, "#attachments a.attachment")
    assert link.text.startswith("invoice.bin")
    link.click()
    target = browser.downloads / "invoice.bin"
    wait_until(target.exists, "the downloaded attachment", WAIT)
    wait_until(lambda: target.read_bytes() == ATTACHMENT, "the whole attachment", WAIT)

    stored = {p.name for p in (capture.maildir / "new").iterdir()}
    browser.find_element(By.ID, "delete").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) == 1)
    assert browser.find_element(By.ID, "view").get_attribute("hidden") is not None
    assert len({p.name for p in (capture.maildir / "new").iterdir()}) == len(stored) - 1
    assert "Earlier note" in browser.find_element(By.CSS_SELECTOR, "#messages tbody tr").text


def test_search_filters_the_list_and_delete_all_empties_it(browser: Any, capture: Capture) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    for subject, body in [("Weekly report", "numbers"), ("Lunch", "pizza on friday")]:
        capture.send(message(subject=subject, text=body))
    wait = WebDriverWait(browser, WAIT)
    browser.get(capture.url)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) == 2)
    browser.find_element(By.ID, "search").send_keys("PIZZA")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) == 1)
    assert "Lunch" in browser.find_element(By.CSS_SELECTOR, "#messages tbody tr").text
    browser.find_element(By.ID, "search").send_keys(Keys.BACKSPACE * len("PIZZA"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) == 2)
    browser.find_element(By.ID, "delete-all").click()
    browser.switch_to.alert.accept()
    wait.until(lambda d: d.find_element(By.ID, "empty").is_displayed())
    assert list((capture.maildir / "new").iterdir()) == []


def test_release_from_the_page(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    (tmp_path / "target").mkdir()
    (tmp_path / "ui").mkdir()
    with running(tmp_path / "target", http=None) as target:
        allowed = f"127.0.0.1:{target.smtp_port}"
        with running(tmp_path / "ui", f"--http-release-to={allowed}") as capture:
            capture.send(message(subject="Check this one"), rcpt_tos=["dave@example.com"])
            wait = WebDriverWait(browser, WAIT)
            browser.get(capture.url)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#messages tbody tr"))[0].click()
            wait.until(lambda d: d.find_element(By.ID, "release").is_displayed())
            assert (
                Select(
                    browser.find_element(By.ID, "release-to")
                ).first_selected_option.get_attribute("value")
                == allowed
            )
            browser.find_element(By.ID, "release-button").click()
            wait.until(
                lambda d: d.find_element(By.ID, "release-result").text == f"Released to {allowed}"
            )
        wait_until(lambda: any((target.maildir / "new").iterdir()), "the released message")
        (sent,) = (target.maildir / "new").iterdir()
        assert b"Subject: Check this one\n" in sent.read_bytes()
