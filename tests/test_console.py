"""The console, in a real headless browser (Debian's chromium): the pages render, the
chart draws every recorded point, links between users lead to their pages, a server
with tokens refuses a browser without one; user ids are escaped; the CLI flag serves
it. Screenshots of each view are saved under pytest's tmp_path for a person to see."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import numpy as np
import pytest
from support import CliServer, run_cli
from test_security import _certificate

from scoresvc.core.engine import Engine
from scoresvc.core.model import InteractionKind
from scoresvc.service.auth import Authenticator, TokenStore
from scoresvc.service.console import ConsoleEndpoint
from scoresvc.service.console_views import CHART_POINTS, Views
from scoresvc.service.server import ScoreServer, ServerSettings, Tls, build_server
from scoresvc.storage.history import History
from scoresvc.synthetic import community

DAY = 86_400.0
LIKE, REPLY = InteractionKind.LIKE, InteractionKind.REPLY
#: A user id with markup, quotes, an ampersand and a non-ASCII letter.
ODD = '<b>&"zoë"</b>'
SETTINGS = ServerSettings(
    refresh_gap_seconds=0.005, time_step_seconds=60, history_interval_seconds=3600
)
#: A browser run's limit, for a machine whose cores are busy with other work.
BROWSER_SECONDS = 120.0
DESKTOP, PHONE = "1280,2200", "390,2600"


# ---------------------------------------------------------------------- the browser


def chromium(*args: str) -> str:
    """Run headless chromium with ``args`` in a profile of its own; its stdout. The
    browser and every process it started are killed on every path out."""
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (.ci/run installs Debian's chromium)"
    with tempfile.TemporaryDirectory(prefix="scoresvc-chromium-") as profile:
        proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the renderers go with it
        )
        try:
            out, err = proc.communicate(timeout=BROWSER_SECONDS)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    return out


def dom(url: str) -> Page:
    """The page at ``url`` as the browser rendered it."""
    return Page.of(chromium("--dump-dom", url), url)


def screenshot(url: str, path: Path, size: str) -> None:
    chromium(f"--screenshot={path}", f"--window-size={size}", url)
    assert path.stat().st_size > 10_000, path  # a page, not an empty frame
    print(f"screenshot: {path}")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """The elements of a page (with the text of each, its children's included)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.elements: list[Element] = []
        self._open: list[Element] = []

    @classmethod
    def of(cls, markup: str, url: str) -> Page:
        parsed = cls(url)
        parsed.feed(markup)
        parsed.close()
        return parsed

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in ("meta", "input", "br", "img", "link"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def find(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def text_of(self, tag: str) -> str:
        return self.find(tag)[0].text.strip()

    def link(self, element: Element) -> str:
        return urljoin(self.url, element.attrs["href"])


def _signed_in(url: str, token: str) -> str:
    """``url`` with the sign-in token (the console moves it into a cookie)."""
    return url + ("&" if "?" in url else "?") + f"token={token}"


# ---------------------------------------------------------------------- the server


@dataclass
class Story:
    server: ScoreServer
    history: History
    target: str
    admin: str
    reader: str

    @property
    def url(self) -> str:
        assert self.server.console is not None
        return self.server.console.url


def _engine_with_a_story(history: History, now: float) -> tuple[Engine, str]:
    """A community whose median user ``target`` gains, day by day, the engagement of
    ODD, endorsements in python from the top users, and a farm of fresh accounts; a
    history point recorded after each day (three days ago, two, one)."""
    engine = Engine()
    engine.load_events(community(12_000, 600, seed=3, end=now - 3600))
    snap = engine.refresh(now)
    order = np.argsort(snap.influence, kind="stable")
    target = snap.user_ids[int(order[len(order) // 2])]
    top = [snap.user_ids[int(u)] for u in order[::-1][:6]]
    at = now - 600
    rows = [(ODD, target, REPLY, at)] * 5 + [(t, ODD, REPLY, at) for t in top]
    engine.record_interactions(rows, now=at)
    history.record(engine.refresh(now), at=now - 3 * DAY)
    for t in top:
        engine.endorse(t, target, "python", ts=at, now=at)
    history.record(engine.refresh(now), at=now - 2 * DAY)
    for i in range(12):
        engine.endorse(f"fresh{i}", target, ts=at, now=at)
    history.record(engine.refresh(now), at=now - DAY)
    return engine, target


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory):
    """A server with tokens and the console, its history holding four points: the three
    of the story and the start-up one."""
    data = tmp_path_factory.mktemp("console")
    tokens = TokenStore(data)
    admin, reader = tokens.create("ops", "admin"), tokens.create("viewer", "reader")
    history = History(data / "history")
    engine, target = _engine_with_a_story(history, time.time())
    server = build_server(
        "127.0.0.1:0",
        engine,
        SETTINGS,
        auth=Authenticator(tokens),
        history=history,
        console=ConsoleEndpoint(),
    )
    try:
        server.start()
        assert history.wait_for_points(4, BROWSER_SECONDS)
        yield Story(server, history, target, admin, reader)
    finally:
        server.stop(0)


def fetch(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


# ---------------------------------------------------------------------- in the browser


def test_the_pages_render_their_chart_and_links_in_a_browser(story: Story, tmp_path: Path):
    # A browser without a token is refused and asked for one.
    refused = dom(story.url)
    assert refused.text_of("h1") == "Not allowed"
    assert refused.find("input", type="password", name="token")

    # The top users, signed in with ?token= (a redirect sets the cookie, drops the token).
    top = dom(_signed_in(story.url, story.admin))
    assert top.text_of("h1") == "Top users overall"
    assert top.find("meta", name="viewport")
    ranked = top.find("a", class_="user")
    assert len(ranked) == 50
    snap = story.server.engine.snapshot
    assert [a.text for a in ranked[:10]] == [r.user_id for r in snap.top(10)]

    # The target's page, and what changed since the first recorded day.
    user_url = urljoin(story.url, f"/user?id={story.target}")
    day = time.strftime("%Y-%m-%d", time.gmtime(story.history.times()[0]))
    user = dom(_signed_in(f"{user_url}&since={day}", story.admin))
    assert user.text_of("h1") == story.target
    for topic in ("", "python"):
        sections = user.find("section", class_="history", **{"data-topic": topic})
        assert len(sections) == 1, topic
        recorded = story.history.points(story.target, topic)
        assert len(recorded) == 4
        drawn = [
            c
            for c in user.find("circle", class_="point")
            if c in _within(user, sections[0], "circle")
        ]
        assert [float(c.attrs["data-time"]) for c in drawn] == [p.time for p in recorded]
        assert [float(c.attrs["data-score"]) for c in drawn] == [p.score for p in recorded]
    sentences = user.find("ul", class_="sentences")
    assert sentences and "of your standing comes from" in sentences[0].text
    assert "lists this user in 1 cluster" in user.find("p", class_="suspected")[0].text
    assert "sybil farm fresh" in [td.text for td in user.find("td")]

    # A contributor's link leads to the contributor's page: ODD, escaped on the way.
    contributors = [a for a in user.find("a", class_="user") if a.text == ODD]
    assert contributors, "ODD passes trust to the target"
    followed = dom(_signed_in(user.link(contributors[0]), story.admin))
    assert followed.text_of("h1") == ODD
    assert not [b for b in followed.find("b") if "zoë" in b.text]  # its markup is text

    # Then (no point precedes that day: the oldest), now and their difference.
    assert "oldest recorded point" in user.find("p", class_="compared")[0].text
    cells = [td.text for td in user.find("td")]
    score_row = cells[cells.index("Score") : cells.index("Score") + 4]
    then, now, change = (float(c) for c in score_row[1:])
    assert then == pytest.approx(float(f"{story.history.points(story.target)[0].score:.4g}"))
    assert change == pytest.approx(now - then, abs=0.06)

    views = {
        "top-desktop.png": (story.url, DESKTOP),
        "top-phone.png": (story.url, PHONE),
        "user-desktop.png": (f"{user_url}&since={day}", DESKTOP),
        "user-phone.png": (user_url, PHONE),
        "suspects-desktop.png": (urljoin(story.url, "/suspects"), DESKTOP),
    }
    for name, (url, size) in views.items():
        screenshot(_signed_in(url, story.admin), tmp_path / name, size)
    readme_copy = os.environ.get("SCORESVC_CONSOLE_SCREENSHOT")
    if readme_copy:  # how docs/console-user.png is made
        shutil.copyfile(tmp_path / "user-desktop.png", readme_copy)
    print(f"console screenshots in {tmp_path}")


def _within(page: Page, container: Element, tag: str) -> list[Element]:
    """The ``tag`` elements between ``container``'s start and the next element of its
    kind (sections do not nest here)."""
    i = page.elements.index(container)
    out = []
    for e in page.elements[i + 1 :]:
        if e.tag == container.tag:
            break
        if e.tag == tag:
            out.append(e)
    return out


# ---------------------------------------------------------------------- over HTTP


def test_tokens_and_roles_guard_the_console(story: Story):
    user_url = urljoin(story.url, f"/user?id={story.target}")
    status, body = fetch(user_url)
    assert status == 401 and story.target not in body
    assert fetch(user_url, "sv1.0000.wrong")[0] == 401
    status, body = fetch(user_url, story.reader)
    assert status == 200 and "needs an admin token" in body and "flagged" not in body
    assert fetch(urljoin(story.url, "/suspects"), story.reader)[0] == 403
    status, body = fetch(urljoin(story.url, "/suspects"), story.admin)
    assert status == 200 and "fresh0" in body


def test_a_token_in_the_address_becomes_a_cookie_and_leaves_the_address(story: Story):
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(_signed_in(urljoin(story.url, "/?topic=python"), story.reader), timeout=60)
    assert redirect.value.code == 303
    assert redirect.value.headers["Location"] == "/?topic=python"
    cookie = redirect.value.headers["Set-Cookie"]
    assert cookie.startswith(f"scoresvc_console={story.reader};") and "HttpOnly" in cookie
    request = urllib.request.Request(urljoin(story.url, "/?topic=python"))
    request.add_header("Cookie", cookie.split(";")[0])
    with urllib.request.urlopen(request, timeout=60) as response:
        assert "Top users in python" in response.read().decode("utf-8")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_user_ids_are_escaped_and_their_links_lead_back_to_them(story: Story):
    status, body = fetch(urljoin(story.url, f"/user?id={story.target}"), story.admin)
    assert status == 200
    assert ODD not in body and "&lt;b&gt;&amp;&quot;zoë&quot;&lt;/b&gt;" in body
    page = Page.of(body, story.url)
    link = next(a for a in page.find("a", class_="user") if a.text == ODD)
    assert parse_qs(urlsplit(link.attrs["href"]).query)["id"] == [ODD]
    status, body = fetch(page.link(link), story.admin)
    assert status == 200 and Page.of(body, story.url).text_of("h1") == ODD
    assert fetch(urljoin(story.url, "/user?id=nobody"), story.admin)[0] == 404
    assert fetch(urljoin(story.url, "/user?id=nobody&since=yesterday"), story.admin)[0] == 404
    status, _ = fetch(f"{urljoin(story.url, '/user')}?id={story.target}&since=x", story.admin)
    assert status == 400


# ---------------------------------------------------------------------- the CLI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_console_port_serves_the_console_without_tokens_on_loopback():
    port = _free_port()
    with CliServer("serve", "--port", "0", "--data-dir", "", "--console-port", str(port)) as server:
        server.wait_serving()
        status, body = fetch(f"http://127.0.0.1:{port}/")
        assert status == 200 and "Top users overall" in body
        server.stop()
    assert f"console on http://127.0.0.1:{port}/" in server.log()


def test_with_tls_the_console_serves_https_with_the_apis_certificate():
    ca, ca_key, ca_pem, _ = _certificate("scoresvc test CA", ca=True)
    _, _, server_pem, server_key = _certificate("localhost", ca, ca_key)
    tls = Tls(server_pem, server_key)
    server = build_server("127.0.0.1:0", Engine(), SETTINGS, tls=tls, console=ConsoleEndpoint())
    try:
        server.start()
        assert server.console is not None
        url = f"https://localhost:{server.console.port}/"
        trusting = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
        with urllib.request.urlopen(url, timeout=60, context=trusting) as response:
            assert "Top users overall" in response.read().decode("utf-8")
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no page
            urllib.request.urlopen(f"http://localhost:{server.console.port}/", timeout=60)
    finally:
        server.stop(0)


def test_a_console_on_a_public_address_needs_tokens_as_the_api_does(tmp_path: Path):
    refused = run_cli(
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "d"),
        "--console-port",
        str(_free_port()),
        "--console-host",
        "0.0.0.0",
    )
    assert refused.returncode == 2 and "serving 0.0.0.0 needs tokens" in refused.stderr


def test_the_chart_counts_the_points_it_leaves_out_exactly(tmp_path):
    engine = Engine()
    t0 = 1_700_000_000.0
    engine.record_interactions([("ana", "bo", LIKE, t0)], now=t0)
    snap = engine.refresh(t0)
    history = History(tmp_path, clock=lambda: t0 + 10.0)
    for i in range(CHART_POINTS + 3):
        history.record(snap, at=t0 + i * 1e-3)
    points, dropped = Views(None, history)._chart_points("bo", "")  # type: ignore[arg-type]
    assert len(points) == CHART_POINTS and dropped == 3
