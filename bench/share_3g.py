"""Benchmark: the share page on a slow 3G line, against a page of the CMS in the same run.

Serves the demo township (waitress, loopback, production config), gives one approved notice
a rendered clip, and loads its share page in Debian's Chromium with DevTools' "3G" network
profile (Network.emulateNetworkConditions: 562.5 ms latency, 1.44 Mbit/s down, 675 kbit/s
up; cache off), ``--rounds`` times. The baseline is the login page measured the same way:
an ordinary page of the CMS with its stylesheet and script as separate requests.

    python bench/share_3g.py [--rounds 5]

Target (issue 19, the MIIT rules for elders): the share page loads (the load event) in under
one second. The last line is

    RESULT share_load_ms=<median> share_bytes=<transfer> share_requests=<n>
           login_load_ms=<median> login_requests=<n> target=<met|missed>

(on one line).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM_ARGS, chromium_path, serve  # noqa: E402
from tests.browser.test_share_elders import THREE_G, with_clip  # noqa: E402


def measure(browser: Any, base: str, path: str) -> tuple[float, int, int]:
    """One cold load of ``path`` on 3G: load event (ms), transfer bytes, requests."""
    context = browser.new_context(
        base_url=base, viewport={"width": 360, "height": 640}, is_mobile=True
    )
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", THREE_G)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path, wait_until="load")
    load, size = page.evaluate(
        "(() => { const n = performance.getEntriesByType('navigation')[0];"
        " return [n.loadEventEnd, n.transferSize]; })()"
    )
    context.close()
    return float(load), int(size), len(requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        print("Chromium not found", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp) / "data") as server:
        share_path, _audio = with_clip(server, "2026年度生活垃圾清运费收缴通知", 65.0)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
            share = [measure(browser, server.url, share_path) for _ in range(args.rounds)]
            login = [measure(browser, server.url, "/login") for _ in range(args.rounds)]
            browser.close()
    share_ms = statistics.median(s[0] for s in share)
    login_ms = statistics.median(s[0] for s in login)
    for name, rows in (("share", share), ("login", login)):
        for load, size, requests in rows:
            print(f"{name}: load {load:.0f} ms, {size} bytes, {requests} request(s)")
    print(
        f"RESULT share_load_ms={share_ms:.0f} share_bytes={share[-1][1]} "
        f"share_requests={share[-1][2]} login_load_ms={login_ms:.0f} "
        f"login_requests={login[-1][2]} target={'met' if share_ms < 1000 else 'missed'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
