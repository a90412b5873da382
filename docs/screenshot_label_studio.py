"""Screenshot of a Label Studio page with headless Chromium (Debian's `chromium` package), logged in.

Why a script: Label Studio's pages need a session, and `chromium --screenshot` cannot log in. We
log in with requests (CSRF cookie → login form), hand the session cookie to a fresh headless
Chromium over the DevTools protocol, open the page, wait for the app to render and save a PNG.
Everything stays on 127.0.0.1. Needs `websocket-client` (use a throwaway venv, not the
project's):

    apt-get install -y chromium
    python3 -m venv /tmp/shot && /tmp/shot/bin/pip install websocket-client requests
    /tmp/shot/bin/python docs/screenshot_label_studio.py --ls-url http://127.0.0.1:8093 \
        --path '/projects/1/data?tab=1' --out docs/screenshot-label-studio.png
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlparse

import requests
import websocket

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def login(ls_url: str, email: str, password: str) -> dict[str, str]:
    """Session cookies of a logged-in Label Studio user (the start script's login recipe)."""
    s = requests.Session()
    s.get(f"{ls_url}/user/login/", timeout=10)
    csrf = s.cookies["csrftoken"]
    r = s.post(f"{ls_url}/user/login/", data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
               headers={"Referer": f"{ls_url}/user/login/", "X-CSRFToken": csrf}, allow_redirects=False, timeout=10)
    if r.status_code != 302:
        raise SystemExit(f"login as {email} failed: HTTP {r.status_code}")
    return s.cookies.get_dict()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})


def screenshot(ls_url: str, cookies: dict[str, str], path: str, out: str, width: int, height: int, wait: float) -> None:
    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    chromium = subprocess.Popen(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
         "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                page = next(t for t in targets if t.get("type") == "page")
                break
            except (requests.RequestException, StopIteration):
                if time.monotonic() > deadline:
                    raise SystemExit("chromium did not open its DevTools port")
                time.sleep(0.3)
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools.call("Network.enable")
        host = urlparse(ls_url).hostname
        for name, value in cookies.items():
            tools.call("Network.setCookie", name=name, value=value, domain=host, path="/")
        tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        tools.call("Page.enable")
        tools.call("Page.navigate", url=ls_url + path)
        time.sleep(wait)  # the Data Manager is a single-page app: it renders after its API calls
        shot = tools.call("Page.captureScreenshot", format="png")
        with open(out, "wb") as fh:
            fh.write(base64.b64decode(shot["data"]))
    finally:
        chromium.terminate()
        try:
            chromium.wait(timeout=10)
        except subprocess.TimeoutExpired:
            chromium.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ls-url", default="http://127.0.0.1:8089")
    parser.add_argument("--email", default=os.environ.get("LS_USER", "admin@example.com"))
    parser.add_argument("--password", default=os.environ.get("LS_PASSWORD", "Admin-Passw0rd-123"))
    parser.add_argument("--path", required=True, help="page to open, e.g. /projects/1/data?tab=1")
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--wait", type=float, default=12.0, help="seconds to let the page render")
    args = parser.parse_args()
    ls_url = args.ls_url.rstrip("/")
    screenshot(ls_url, login(ls_url, args.email, args.password), args.path, args.out, args.width, args.height, args.wait)
    print(args.out)


if __name__ == "__main__":
    main()
