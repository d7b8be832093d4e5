"""The one-time loopback confirmation page of ``agent19 serve``, in a real headless Chromium: the
human reads the impact and types the phrase there; the model's retry with the token then runs."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import need
from tests.mcp_client import stdio_session

SQL = "DELETE FROM items WHERE note <> '<b>bold</b>'"  # every row, in disguise; markup in the statement


@pytest.fixture
def browser() -> Iterator:
    need(shutil.which("chromium") is not None and shutil.which("chromedriver") is not None,
         "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="agent19-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    # after a click the form's POST navigates: look for the next page's elements until it has loaded
    driver.implicitly_wait(15)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _request(url: str, method: str = "GET", body: str = "", headers: dict[str, str] | None = None,
             host: str | None = None) -> tuple[int, str, dict[str, str]]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    all_headers = {"Host": host or parts.netloc, **(headers or {})}
    if body:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, parts.path, body=body, headers=all_headers)
    response = conn.getresponse()
    return response.status, response.read().decode(), dict(response.getheaders())


async def test_a_human_confirms_on_the_loopback_page_then_the_retry_runs(dsn, tmp_path, browser):
    from selenium.webdriver.common.by import By

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE items (id int PRIMARY KEY, note text);"
                  "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 100) g")
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path)) as session:
        out = (await session.call_tool("run_sql", {"sql": SQL})).structured_content
        assert out["executed"] is False
        report = out["confirmation"]["report"]
        url, token, phrase = report["confirm_url"], report["token"], report["phrase"]
        assert url.startswith("http://127.0.0.1:") and len(url.rsplit("/", 1)[1]) >= 40  # 256 random bits

        browser.get(url)
        assert browser.find_element(By.ID, "statement").text == SQL  # shown as text, not markup
        assert "<b>bold</b>" in browser.page_source.replace("&lt;", "<").replace("&gt;", ">")
        assert not browser.find_elements(By.CSS_SELECTOR, "#statement b")
        assert "100 of them touched (measured)" in browser.find_element(By.ID, "impact").text
        assert browser.find_element(By.ID, "phrase").text == phrase

        browser.find_element(By.ID, "phrase-input").send_keys(phrase.lower())
        browser.find_element(By.ID, "confirm").click()
        assert "does not match exactly" in browser.find_element(By.ID, "error").text
        early = (await session.call_tool("confirm_destructive", {"sql": SQL, "token": token})).structured_content
        assert early["outcome"] == "refused" and "not confirmed by a human yet" in early["reasons"][0]

        browser.find_element(By.ID, "phrase-input").send_keys(phrase)
        browser.find_element(By.ID, "confirm").click()
        assert "Confirmed" in browser.find_element(By.ID, "approved").text
        browser.get(url)
        assert "already used" in browser.find_element(By.TAG_NAME, "body").text  # one approval per page

        done = (await session.call_tool("confirm_destructive", {"sql": SQL, "token": token})).structured_content
        assert done["outcome"] == "executed" and done["channel"] == "loopback page", done
        assert done["result"]["row_count"] == 100
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone()[0] == 0
    log = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [e.get("channel") for e in log if e["outcome"] in {"approved", "executed"}] == ["loopback page"] * 2


async def test_the_page_refuses_other_hosts_sites_and_forms(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE items (id int PRIMARY KEY, note text);"
                  "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 100) g")
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path)) as session:
        report = (await session.call_tool("confirm_destructive", {"sql": "TRUNCATE items"})).structured_content
        url, phrase = report["report"]["confirm_url"], report["report"]["phrase"]
        parts = urllib.parse.urlsplit(url)
        status, page, headers = _request(url)
        assert status == 200 and "TRUNCATE items" in page
        assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "same-origin"
        csrf = page.split("name='csrf' value='", 1)[1].split("'", 1)[0]
        form = urllib.parse.urlencode({"csrf": csrf, "phrase": phrase})

        assert _request(url, host=f"attacker.example:{parts.port}")[0] == 421  # DNS rebinding
        assert _request(f"http://127.0.0.1:{parts.port}/confirm/guessed")[0] == 404
        assert _request(url, "POST", urllib.parse.urlencode({"phrase": phrase}))[0] == 403  # no CSRF value
        assert _request(url, "POST", form, {"Origin": "http://attacker.example"})[0] == 403
        assert _request(url, "POST", form, {"Sec-Fetch-Site": "cross-site"})[0] == 403
        with pytest.raises(OSError):  # bound to 127.0.0.1 only
            socket.create_connection(("127.0.0.2", parts.port), timeout=2).close()
        with psycopg.connect(dsn, autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM items").fetchone()[0] == 100
            if c.execute("SELECT to_regclass('agent19.confirmations') IS NOT NULL").fetchone()[0]:
                assert c.execute("SELECT count(*) FROM agent19.confirmations WHERE approved_by IS NOT NULL"
                                 ).fetchone()[0] == 0  # none of the refused posts approved anything
        status, page, _ = _request(url, "POST", form, {"Origin": f"http://127.0.0.1:{parts.port}",
                                                        "Sec-Fetch-Site": "same-origin"})
        assert status == 200 and "id='approved'" in page
