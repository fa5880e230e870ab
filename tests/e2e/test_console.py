"""The web console (GET /console) as a person uses it: Debian's chromium driven by Playwright.

Against the real stack (redis-server, the local nginx-rtmp room, a Celery worker, gunicorn with
API keys configured): type the key, start a push from the form, see it running in the list,
see the console's player play what the room receives (the room's HLS), stop the push from the
page, see it stopped. A push with ``"Whip": "trtc"`` into the dev stack's WHIP ingest
(devstack/whip.py) plays in the same player over WHEP. While the push plays, a screenshot of
the page is saved to ``artifacts/console.png`` (gitignored) for a person to look at.

The browser is /usr/bin/chromium, which scripts/setup installs (Debian's ``chromium``):
Playwright never downloads one. Without it the browser tests are skipped, saying so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.room import LocalRoom
from devstack.whip import LocalWhip
from jobs import usersig

from ..conftest import job_for
from ..pages import Page, assert_assets_served_locally, fetch
from ..stack import REPO, Api, start_api, start_worker, stop
from ..whipserver import whip_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts"
KEY = "console-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
WHIP_APP = 1400000002
WHIP_KEY = "console-whip-app-key"


@pytest.fixture(scope="module")
def console_api(
    service_env: dict[str, str], workdir: Path, worker: None, room: LocalRoom
) -> Iterator[Api]:
    """An API whose calls need a key, with the console's player pointed at the local room."""
    env = dict(service_env, ROOMCAST_API_KEYS=KEY, ROOMCAST_CONSOLE_PREVIEW_URL=room.preview_url)
    proc, base = start_api(env, workdir / "console_api.log")
    yield Api(base)
    stop(proc)


@pytest.fixture(scope="module")
def whip_console(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, LocalWhip]]:
    """The dev stack's WHIP ingest (checking the app's UserSigs), and a worker and an API
    with the console that publish there and play it over WHEP, on a queue of their own."""
    logs = tmp_path_factory.mktemp("console_whip")
    with LocalWhip(logs, secret_keys={WHIP_APP: WHIP_KEY}, log=logs / "whip.log") as ingest:
        env = dict(
            service_env,
            ROOMCAST_API_KEYS=KEY,
            ROOMCAST_TRTC_WHIP_URL=ingest.pub_url,
            ROOMCAST_CONSOLE_WHIP_PREVIEW_URL=ingest.preview_url,
            ROOMCAST_QUEUE="roomcast_console_whip",
        )
        worker = start_worker(env, logs / "worker.log", "console_whip")
        api_proc, base = start_api(env, logs / "api.log")
        try:
            yield Api(base), ingest
        finally:
            stop(api_proc)
            stop(worker)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (scripts/setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # executable_path: Debian's build, no Playwright browser download. Muted autoplay is
        # allowed anyway; the flag only removes a source of flakiness. WebRTC: the host's
        # addresses as they are, not hidden behind mDNS names aiortc would have to resolve.
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--autoplay-policy=no-user-gesture-required",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab; fails the test on an uncaught script error or a CSP violation."""
    context = browser.new_context(viewport={"width": 1360, "height": 980})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    tab.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield tab
    context.close()
    assert not problems, problems


def open_console(page: Any, api: Api) -> None:
    """Open the console and give it the API key, as a person would."""
    from playwright.sync_api import expect

    page.goto(api.base + "/console")
    expect(page.locator("#conn")).to_contain_text("needs a key")  # asked before any data shows
    page.fill("#api-key", KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#conn")).to_contain_text("updated")


def running_row(api: Api, page: Any, job: dict[str, Any]) -> tuple[str, Any]:
    """Start ``job`` through the API and open the console: its request id, and its row once
    the push runs."""
    from playwright.sync_api import expect

    answer = api.call("POST", "/v1/pushes", job, headers=AUTH)
    assert answer.status == 202, answer.body
    request_id = answer.body["RequestId"]
    open_console(page, api)
    row = page.locator(f'tr[data-request-id="{request_id}"]')
    expect(row).to_have_attribute("data-state", "running", timeout=15_000)
    return request_id, row


def video_time(page: Any) -> float:
    return float(page.evaluate("document.querySelector('#player').currentTime"))


def test_start_watch_and_stop_a_push_from_the_console(
    console_api: Api, room: LocalRoom, long_clip: str, room_name: str, page: Any
) -> None:
    """Form → running in the list → the room's picture plays → Switch → Stop → stopped.

    Leaves the screenshot artifacts/console.png, taken while the push plays.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    open_console(page, console_api)
    form = page.locator("#start-form")
    form.locator("[name=VideoSrc]").fill(room.media_url(long_clip))
    form.locator("[name=SdkAppId]").fill("1400000001")
    form.locator("[name=StrRoomId]").fill(room_name)
    form.locator("[name=UserId]").fill("console_user")
    form.locator("[name=UserSig]").fill("sig-for-tests")
    form.locator("[name=Mode]").select_option("vod")
    form.locator("[name=Switchable]").check()
    page.click("#start")

    result = page.locator("#start-result[data-request-id]")
    expect(result).to_contain_text("Async run task submitted")
    request_id = result.get_attribute("data-request-id")
    assert request_id
    # The UserSig leaves the page once sent; the key stays for this tab only.
    assert form.locator("[name=UserSig]").input_value() == ""
    assert page.evaluate("sessionStorage.getItem('roomcast.apiKey')") == KEY

    row = page.locator(f'tr[data-request-id="{request_id}"]')
    expect(row).to_have_attribute("data-state", "running", timeout=15_000)
    expect(row).to_contain_text("console_user")
    expect(row).to_contain_text(room_name)

    # The player shows what the room receives: decoded frames, and time that moves on.
    try:
        page.wait_for_function(
            "() => { const v = document.querySelector('#player');"
            " return v.readyState >= 2 && v.currentTime > 0.5; }",
            timeout=45_000,  # HLS in a headless browser, on a machine running the whole suite
        )
    except PlaywrightTimeout:
        push = console_api.call("GET", f"/v1/pushes/{request_id}", headers=AUTH).body
        message = page.locator("#player-message").text_content()
        raise AssertionError(
            f"the player shows nothing; player: {message!r}; push: {push}"
        ) from None
    before = video_time(page)
    time.sleep(1.5)
    assert video_time(page) > before + 0.5, "the room's picture does not advance"
    expect(row.locator("progress")).to_have_attribute("max", "60", timeout=5_000)
    expect(row).to_contain_text("playing clip 1:")

    # Switch the clip (here: the same file again, so the push goes on): the next clip plays.
    row.locator(".switch-url").fill(room.media_url(long_clip))
    row.get_by_role("button", name="Switch").click()
    expect(row).to_contain_text("playing clip 2:", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

    row.get_by_role("button", name="Stop").click()
    expect(row).to_have_attribute("data-state", "stopped", timeout=10_000)
    expect(page.locator("#player-message")).to_contain_text("The push ended (stopped)")
    status = console_api.call("GET", f"/v1/pushes/{request_id}", headers=AUTH).body
    assert status["State"] == "stopped" and status["Reason"] == "stopped through the API", status


def test_a_fanout_push_s_rooms_are_added_and_removed_from_the_console(
    console_api: Api, room: LocalRoom, long_clip: str, room_name: str, page: Any
) -> None:
    from playwright.sync_api import expect

    job = job_for(room, long_clip, room_name, Targets=[], MaxDuration=60)
    request_id, row = running_row(console_api, page, job)
    expect(row.locator("ul.targets")).to_contain_text("main:", timeout=10_000)

    row.locator(".target-room").fill(f"{room_name}_extra")
    row.locator(".target-user").fill("extra_user")
    row.locator(".target-sig").fill("sig-extra")
    row.get_by_role("button", name="Add room").click()
    added = row.locator('li[data-target-id="t1"]')
    expect(added).to_contain_text(f"{room_name}_extra · extra_user · live", timeout=15_000)
    assert row.locator(".target-sig").input_value() == "", "the UserSig stays out of the page"

    added.get_by_role("button", name="remove t1").click()
    expect(added).to_have_count(0, timeout=10_000)
    status = console_api.call("GET", f"/v1/pushes/{request_id}", headers=AUTH).body
    assert [t["TargetId"] for t in status["Targets"]] == ["main"], status
    assert "sig-extra" not in str(status)
    console_api.call("POST", f"/v1/pushes/{request_id}/stop", headers=AUTH)


def test_a_push_over_whip_shows_its_endpoint_and_not_its_token(
    console_api: Api, room: LocalRoom, long_clip: str, room_name: str, page: Any
) -> None:
    from playwright.sync_api import expect

    with whip_server(token="console-whip-token") as server:
        whip = {"Url": server.url(room_name), "Token": "console-whip-token"}
        job = job_for(room, long_clip, room_name, Whip=whip, MaxDuration=60)
        request_id, row = running_row(console_api, page, job)
        expect(row).to_contain_text(f"WHIP http://127.0.0.1:{server.port}")
        assert "console-whip-token" not in page.content()
        console_api.call("POST", f"/v1/pushes/{request_id}/stop", headers=AUTH)


def test_a_push_over_whip_trtc_plays_in_the_console_over_whep(
    whip_console: tuple[Api, LocalWhip], room: LocalRoom, long_clip: str, room_name: str, page: Any
) -> None:
    from playwright.sync_api import expect

    api, ingest = whip_console
    sig = usersig.generate(WHIP_APP, WHIP_KEY, "whep_user")
    job = job_for(room, long_clip, room_name, SdkAppId=WHIP_APP, UserId="whep_user",
                  UserSig=sig, Whip="trtc", MaxDuration=60)  # fmt: skip
    request_id, row = running_row(api, page, job)
    expect(row).to_contain_text("WHIP trtc")
    row.get_by_role("button", name="Watch").click()
    # WebRTC's picture, in the page's own player: a MediaStream, and time that moves on.
    page.wait_for_function(
        "() => { const v = document.querySelector('#player');"
        " return v.srcObject && v.readyState >= 2 && v.currentTime > 0.5; }",
        timeout=25_000,
    )
    before = video_time(page)
    time.sleep(1.5)
    assert video_time(page) > before + 0.5, "the WebRTC picture does not advance"
    expect(page.locator("#player-message")).to_contain_text("over WebRTC")
    href = page.locator("#preview-link").get_attribute("href")
    assert href == f"{ingest.preview_url}#{room_name}"
    api.call("POST", f"/v1/pushes/{request_id}/stop", headers=AUTH)
    expect(page.locator("#player-message")).to_contain_text("The push ended (stopped)")
    assert "play start: room " + room_name in (ingest.log.read_text() if ingest.log else "")


def test_the_console_shows_what_users_typed_as_text(
    console_api: Api, room: LocalRoom, room_name: str, page: Any
) -> None:
    from playwright.sync_api import expect

    hostile = room.media_url("<img src=x onerror=window.pwned=1>.mp4")
    answer = console_api.call(
        "POST", "/v1/pushes", job_for(room, "unused.mp4", room_name, VideoSrc=hostile), headers=AUTH
    )
    assert answer.status == 202, answer.body
    request_id = answer.body["RequestId"]
    open_console(page, console_api)
    row = page.locator(f'tr[data-request-id="{request_id}"]')
    expect(row).to_have_attribute("data-state", "failed", timeout=15_000)
    expect(row.locator(".source").first).to_have_text(hostile)
    assert row.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None


# --- the page, over plain HTTP ----------------------------------------------------------------


def test_the_console_page_is_public_and_loads_only_from_the_api_and_the_room(
    console_api: Api, room: LocalRoom
) -> None:
    status, headers, body = fetch(console_api.base + "/console")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert console_api.call("GET", "/v1/pushes").status == 401  # the data needs the key
    csp = headers["Content-Security-Policy"]
    room_origin = room.http_base
    assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert f"connect-src 'self' {room_origin};" in csp
    page = Page(body.decode())
    assert page.meta["roomcast-preview-url"] == room.preview_url
    assert any(r.endswith("hls.min.js") for r in page.scripts), page.refs
    assert_assets_served_locally(console_api.base + "/console", page)


def test_the_preview_url_setting_is_escaped_and_empty_means_no_player(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from api import create_app
    from jobs.settings import Settings

    monkeypatch.setattr("jobs.logs.configure_logging", lambda *args: None)
    hostile = 'http://room.example/"><script>alert(1)</script>'
    client = create_app(Settings(console_preview_url=hostile)).test_client()
    answer = client.get("/console")
    page = Page(answer.get_data(as_text=True))
    assert page.meta["roomcast-preview-url"] == hostile + "/"  # one attribute, nothing more
    assert "<script>alert" not in answer.get_data(as_text=True)
    assert "connect-src 'self' http://room.example;" in answer.headers["Content-Security-Policy"]

    whep = "http://127.0.0.1:8090/"
    settings = Settings(console_preview_url="http://room.example", console_whip_preview_url=whep)
    answer = create_app(settings).test_client().get("/console")
    assert Page(answer.get_data(as_text=True)).meta["roomcast-whip-preview-url"] == whep
    policy = answer.headers["Content-Security-Policy"]
    assert "connect-src 'self' http://room.example http://127.0.0.1:8090;" in policy

    answer = create_app(Settings(console_preview_url="")).test_client().get("/console")
    page = Page(answer.get_data(as_text=True))
    assert page.meta["roomcast-preview-url"] == ""
    assert "connect-src 'self';" in answer.headers["Content-Security-Policy"]
