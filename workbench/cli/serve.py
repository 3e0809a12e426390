"""`workbench serve`: the same app in a browser through textual-serve, for its owner only.

Like Jupyter, it prints a URL holding a secret token. A request carrying the token (`?token=`)
is answered and gets the token back as a cookie (HttpOnly, SameSite=Strict), which the page's
own requests (its scripts, its websocket) then carry; any other request gets 403 and nothing
else. On a shared machine, every local user can reach a localhost port: the token is what keeps
them out. It binds localhost unless `--host` says otherwise (reach it from another machine
through an SSH tunnel rather than an open port). Each browser session runs `workbench tui` on the
same store, named in its environment (a database URL's password never shows on a command line).
"""

from __future__ import annotations

import argparse
import hmac
import os
import secrets
import shlex
import sys
from typing import Any
from urllib.parse import urlsplit

HOST = "localhost"


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "serve",
        parents=[common],
        help="open the workbench in a browser (textual-serve, on localhost, behind a secret token)",
        description="Serve the terminal workbench to a browser at the URL it prints, which holds a secret "
        "token: a request without it gets 403. Each browser tab runs its own app. It listens on localhost "
        "unless --host says otherwise; from elsewhere: ssh -L PORT:localhost:PORT this-host, then open the URL.",
    )
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.add_argument("--host", default=HOST, help="the address to listen on (default: localhost; 0.0.0.0: every one)")
    p.set_defaults(func=serve)


def command(args: argparse.Namespace) -> str:
    """The command each browser session runs: this workbench's `tui` with the same data folder (the
    store comes from the environment serve() sets)."""
    argv = [sys.executable, "-m", "workbench", "tui"]
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        argv += ["--data-dir", os.path.abspath(os.path.expanduser(data_dir))]
    return shlex.join(argv)


def public_url(host: str, port: int) -> str:
    """Where a browser finds a server listening on `host` (one listening everywhere: by this
    machine's name)."""
    if host in ("", "0.0.0.0", "::"):
        import socket

        host = socket.getfqdn()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def token_guard(token: str, cookie: str) -> Any:
    """aiohttp middleware: a request passes with `?token=TOKEN` (and its response sets the cookie)
    or with the cookie; any other gets 403 and nothing else. A websocket must come from a page of
    this server (its Origin, when sent, names this host)."""
    from aiohttp import web

    def holds(value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), token.encode())

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        foreign = origin is not None and request.headers.get("Upgrade", "").lower() == "websocket" \
            and urlsplit(origin).netloc != request.host
        by_query = holds(request.query.get("token"))
        if foreign or not (by_query or holds(request.cookies.get(cookie))):
            return web.Response(status=403, text="403: Forbidden")
        response = await handler(request)
        if by_query and not response.prepared:
            response.set_cookie(cookie, token, httponly=True, samesite="Strict")
        return response

    return guard


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web
    from textual_serve.server import Server

    from store.db import Store

    with Store.open(getattr(args, "store", None)) as store:  # a bad store fails here, in one line, not in the browser
        os.environ.update(store.environment())
    token = secrets.token_urlsafe(24)
    guard = token_guard(token, f"workbench-serve-{args.port}")

    class GuardedServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard)
            return app

        async def on_startup(self, app: web.Application) -> None:
            pass  # (its banner names the command, not the URL to open)

    url = public_url(args.host, args.port)
    print(f"workbench: serving on {url}/?token={token} (ctrl+c stops it)", file=sys.stderr, flush=True)
    GuardedServer(command(args), host=args.host, port=args.port, title="Width Pruning Workbench",
                  public_url=url).serve()  # fmt: skip
    return 0
