"""`workbench serve` for its owner only: real HTTP requests to a served instance. Without the token
of the URL it prints (or the cookie that URL sets), every request gets 403 and nothing else; it
listens on localhost only."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time

import aiohttp
import psutil
import pytest

LIMIT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(store):
    """A `workbench serve` process on the store; (its URL with the token, the process)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "workbench", "--store", store.location, "serve", "--port",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = process.stderr.readline()
        found = re.fullmatch(r"workbench: serving on (http://localhost:\d+/\?token=(\S+)) \(ctrl\+c stops it\)\n", line)
        assert found, line
        deadline = time.monotonic() + LIMIT_S
        while not _listening(process.pid, port):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield found.group(1), process
    finally:
        process.terminate()
        process.wait(timeout=LIMIT_S)


def _listening(pid: int, port: int) -> list[str]:
    """The addresses process `pid` listens on at `port`."""
    connections = psutil.Process(pid).net_connections(kind="inet")
    return [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def test_a_request_without_the_token_gets_403_and_nothing_else(served):
    url, process = served
    base, token = url.split("/?token=")

    async def requests() -> None:
        async with aiohttp.ClientSession() as stranger:
            for path in ("/", "/?token=" + "x" * len(token), "/?token=", "/static/css/xterm.css", "/download/x"):
                assert await _get(stranger, base + path) == (403, "403: Forbidden"), path
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await stranger.ws_connect(base + "/ws")
            assert refused.value.status == 403

        async with aiohttp.ClientSession() as owner:
            async with owner.get(url) as response:
                page = await response.text()
                assert response.status == 200 and "Width Pruning Workbench" in page
                cookie = response.headers["Set-Cookie"]
                assert token in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            # The page's own requests carry the cookie: its stylesheet, its websocket.
            status, css = await _get(owner, base + "/static/css/xterm.css")
            assert status == 200 and ".xterm" in css
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # not from a page of this server
                await owner.ws_connect(base + "/ws", origin="http://evil.example")
            assert refused.value.status == 403
            async with owner.ws_connect(base + "/ws?width=80&height=24", origin=base) as websocket:
                assert not websocket.closed  # the handshake passed: a workbench starts for this tab

    asyncio.run(requests())
    assert set(_listening(process.pid, int(base.rsplit(":", 1)[1]))) <= {"127.0.0.1", "::1"}
