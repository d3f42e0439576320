"""The console as a supervisor sees it: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against a gateway process, with a real call placed by
``gateway dial``. DOM checks and screenshots (kept under the test's tmp dir), no pixels
compared.

Selenium is synchronous: each browser step runs in a worker thread so the event loop keeps
reading the gateway's log. Every wait is bounded (WebDriverWait, the log's wait_for).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .gateway_proc import REPO, GatewayProcess
from .peers import missing_peer_tools
from .test_console_api import TOKEN, console_config

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_peer_tools("espeak-ng", "sox"))
        or not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="needs chromium, chromium-driver, espeak-ng and sox",
    ),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "chromedriver"), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, condition: Callable[[Any], Any], timeout: float, what: str) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message=what)


async def step(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_a_supervisor_follows_hears_and_hangs_up_a_call(tmp_path: Path, browser: Any) -> None:
    port, cfg = console_config(tmp_path)
    cfg["agent"] = {"recording": True, "input_transcription": {"model": "whisper-1"}}
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = f"http://127.0.0.1:{port}"
    async with GatewayProcess(tmp_path, cfg, env={"GATEWAY_API_TOKEN": TOKEN}) as gateway:

        def log_in() -> None:
            browser.get(base + "/console/")  # not logged in: the login form
            until(browser, lambda d: d.current_url.endswith("/console/login"), 5, "login")
            browser.find_element(By.ID, "token").send_keys(TOKEN)
            browser.find_element(By.ID, "user").send_keys("Supervisor Sam")
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            until(browser, lambda d: d.title.startswith("Live calls"), 5, "the list")
            until(browser, lambda d: d.find_element(By.ID, "link-state").text == "Live", 5, "SSE")

        await step(log_in)
        dial = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "dial", gateway.uri("echo"),
            "--say", "Hello, I would like to know where my order is.",
            "--listen", "40", "--max-duration", "60", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        )  # fmt: skip
        try:
            received = await gateway.wait_for("call.received", timeout=15)
            call_id = received["call_id"]
            seen_at = time.monotonic()

            def row_appears() -> float:
                row = f"tr[data-call='{call_id}']"
                until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), 1.0, "the row")
                return time.monotonic() - seen_at

            # Within a second of the gateway logging the INVITE (measured from when this
            # test read that line, which comes after it: an upper bound of the push).
            appeared_s = await step(row_appears)
            print(f"\nconsole: the call's row appeared {appeared_s * 1000:.0f} ms after its INVITE")

            def row_fills() -> None:
                def answered(d: Any) -> bool:
                    cells = d.find_elements(By.CSS_SELECTOR, f"tr[data-call='{call_id}'] td")
                    return len(cells) == 8 and cells[3].text == "answered"

                until(browser, answered, 10, "the call answered in the list")
                browser.save_screenshot(str(shots / "list.png"))
                browser.find_element(By.CSS_SELECTOR, f"tr[data-call='{call_id}'] a").click()
                until(browser, lambda d: "/console/call" in d.current_url, 5, "the call page")
                until(
                    browser, lambda d: d.find_element(By.ID, "link-state").text == "Live", 5, "SSE"
                )

            await step(row_fills)

            def transcript_fills() -> list[str]:
                def turns(d: Any) -> list[str]:
                    items = d.find_elements(By.CSS_SELECTOR, "#transcript li")
                    texts = [i.text for i in items]
                    return texts if any(t.startswith("Agent") for t in texts) else []

                return until(browser, turns, 30, "an agent turn in the transcript")

            texts = await step(transcript_fills)
            assert any(t.startswith("Caller") for t in texts) or texts
            live = browser.find_element(By.ID, "transcript").get_attribute("aria-live")
            assert live == "polite"

            def listen() -> dict[str, Any]:
                browser.find_element(By.ID, "listen").click()
                until(
                    browser,
                    lambda d: d.execute_script("return ListenIn.stats.workletFrames") >= 10,
                    10,
                    "audio frames in the page's player",
                )
                stats = browser.execute_script("return Object.assign({}, ListenIn.stats)")
                assert browser.find_element(By.ID, "listen").get_attribute("aria-pressed") == (
                    "true"
                )
                browser.save_screenshot(str(shots / "call.png"))
                return dict(stats)

            stats = await step(listen)
            print(f"console: listen-in {stats}")
            assert stats["mode"] == "worklet" and stats["frames"] >= 10
            assert stats["bytes"] % 4 == 0  # whole stereo PCM16 samples
            started = await gateway.wait_for("console.listen_started", timeout=5)
            assert (started["call_id"], started["user"]) == (call_id, "Supervisor Sam")
            assert started["source"].startswith("127.")

            def say_and_see_the_meter() -> None:
                browser.find_element(By.ID, "say-text").send_keys("Your order ships today.")
                browser.find_element(By.CSS_SELECTOR, "#say-form button").click()
                until(
                    browser,
                    lambda d: d.find_element(By.ID, "action-result").text == "Say: said",
                    5,
                    "the say action done",
                )
                until(
                    browser,
                    lambda d: (
                        float(d.find_element(By.ID, "meter-agent").get_attribute("value")) > 0
                    ),
                    15,
                    "the agent's level meter",
                )

                # The call's log lines, pushed as they are written (the log tap).
                def happened(d: Any) -> list[str]:
                    texts = [li.text for li in d.find_elements(By.CSS_SELECTOR, "#events li")]
                    joined = " ".join(texts)
                    return (
                        texts if "api.say" in joined and "console.listen_started" in joined else []
                    )

                until(browser, happened, 5, "api.say and console.listen_started in the events")

            await step(say_and_see_the_meter)
            await gateway.wait_for("api.say", timeout=5)

            def hang_up() -> None:
                browser.find_element(By.ID, "hangup").click()
                until(
                    browser,
                    lambda d: d.find_element(By.ID, "f-state").text.startswith("ended"),
                    10,
                    "the call shown ended",
                )

            await step(hang_up)
            ended = await gateway.wait_for("call.ended", timeout=10)
            assert ended["reason"] == "api_hangup"
            await gateway.wait_for("console.listen_stopped", timeout=10)
            out, err = await asyncio.wait_for(dial.communicate(), 20)
            report = json.loads(out)
            assert report["answered"] and report["ended_by"] == "remote BYE", err
        finally:
            if dial.returncode is None:
                dial.kill()
                await dial.wait()

        # The timeline picture is another module's work: one is put beside the record here
        # to show that the history shows it when present.
        calls_dir = Path(cfg["records"]["calls_dir"])
        svg = '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40">'
        svg += '<rect width="400" height="40" fill="#9cf"/><text x="8" y="25">timeline</text></svg>'
        (calls_dir / f"{call_id}.timeline.svg").write_text(svg)

        def history() -> dict[str, Any]:
            browser.get(base + "/console/history")
            row = f"#results tr[data-call='{call_id}'] a"
            until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), 10, "the record")
            browser.find_element(By.ID, "q-caller").send_keys("no-such-caller")
            browser.find_element(By.CSS_SELECTOR, "#search button").click()
            until(
                browser,
                lambda d: d.find_element(By.ID, "found").text == "0 calls found",
                5,
                "an empty search",
            )
            browser.find_element(By.ID, "q-caller").clear()
            browser.find_element(By.CSS_SELECTOR, "#search button").click()
            until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), 5, "the record")
            browser.find_element(By.CSS_SELECTOR, row).click()
            until(
                browser,
                lambda d: d.find_elements(By.CSS_SELECTOR, "#detail-transcript li"),
                5,
                "the transcript",
            )
            until(
                browser,
                lambda d: d.execute_script(
                    "const i = document.getElementById('timeline');"
                    "return !i.hidden && i.complete && i.naturalWidth > 0"
                ),
                5,
                "the timeline picture",
            )
            audio = browser.find_element(By.ID, "recording")
            browser.execute_script("document.getElementById('recording').load()")
            until(
                browser,
                lambda d: (
                    d.execute_script("return document.getElementById('recording').readyState") >= 1
                ),
                5,
                "the recording's metadata",
            )
            browser.save_screenshot(str(shots / "history.png"))
            return {
                "audio_hidden": audio.get_attribute("hidden"),
                "duration": browser.execute_script(
                    "return document.getElementById('recording').duration"
                ),
                "turns": len(browser.find_elements(By.CSS_SELECTOR, "#detail-transcript li")),
            }

        seen = await step(history)
    assert seen["audio_hidden"] is None and seen["duration"] > 1 and seen["turns"] >= 1
    for name in ("list.png", "call.png", "history.png"):
        assert (shots / name).stat().st_size > 1000
    print(f"console: screenshots in {shots}")
