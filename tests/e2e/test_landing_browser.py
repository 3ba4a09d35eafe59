"""The landing page in a real browser: headless Chromium loads / from the daemon, in the daemon's namespace,
and its DOM shows a listener the test made and unix sockets with hostile names as text, with no script or handler
run. The screenshot is a test artifact ($SOCKDIAG_TEST_ARTIFACTS, default test-artifacts/); with
SOCKDIAG_UPDATE_SCREENSHOT=1 it also replaces docs/landing-page.png, the one README shows."""

import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser

from helpers import PORT, ROOT_DIR, SCRIPT_NAME, populate

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1280, 2000
ARTIFACTS = os.environ.get("SOCKDIAG_TEST_ARTIFACTS") or os.path.join(ROOT_DIR, "test-artifacts")
README_SCREENSHOT = os.path.join(ROOT_DIR, "docs", "landing-page.png")


def chromium(netns, profile, *args) -> subprocess.CompletedProcess:
    """Chromium in the namespace with a fresh profile (the daemon listens on the namespace's loopback)."""
    os.makedirs(profile)
    return subprocess.run(["ip", "netns", "exec", netns.name, *CHROMIUM, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.title, self._in_title = set(), [], "", False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


def png_size(path) -> tuple:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_landing_page_in_headless_chromium(daemon, netns, tmp_path):
    names = populate(netns, tmp_path)
    daemon()  # its first GET / made the collection the browser is shown (while younger than 10 s)
    url = f"http://127.0.0.1:{PORT}/"

    loaded = chromium(netns, tmp_path / "profile-dom", "--dump-dom", url)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    dom = Dom()
    dom.feed(loaded.stdout)
    text = "".join(dom.text)
    assert dom.title.startswith("sockdiag_exporter on ") and "pwned" not in dom.title  # the onerror never ran
    assert not dom.tags & {"script", "img", "iframe", "object"}  # the names made no element
    assert re.search(r"All (1[5-9]|2\d) collectors OK", text) and "Listeners: 7, fullest first" in text
    for address in (names["full"], names["inet6"], names["script"], names["path"]):
        assert address in text, address
    assert SCRIPT_NAME in text

    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "landing-page.png")
    if os.path.exists(shot):
        os.remove(shot)
    taken = chromium(netns, tmp_path / "profile-shot", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
                     "--hide-scrollbars", url)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert png_size(shot) == (WIDTH, HEIGHT) and os.path.getsize(shot) > 50_000  # a blank page is a few KB
    if os.environ.get("SOCKDIAG_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, README_SCREENSHOT)
