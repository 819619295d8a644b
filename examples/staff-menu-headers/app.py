#!/usr/bin/env python3
"""A staff-menu stand-in that trusts samlgate's identity headers.

Behind samlgate's reverse proxy (`[upstream] url`) every request that reaches this app either
has a live session, and then carries the identity headers set by the gateway, or is on one of
the gateway's `[upstream] public_paths` (here `/static/`), and then carries none. The gateway
removes any identity header a client sent (any letter case, `_` spellings, duplicates).

This app therefore:
- listens on loopback only: anyone who can reach it directly can send any header;
- requires exactly one `X-Auth-Request-User` on every non-public path (401 otherwise);
- percent-decodes the values (non-ASCII is sent as percent-encoded UTF-8, e.g. 病院 ->
  %E7%97%85%E9%99%A2; a literal `%` arrives as %25), refusing values that are not UTF-8.

Standard library only. README.md beside this file says how to run it next to `samlgate demo`.
"""

import argparse
import html
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

# (header, key in the JSON answer, label on the page)
IDENTITY = [
    ("X-Auth-Request-User", "user", "G-MIS ID"),
    ("X-Samlgate-Display-Name", "display_name", "氏名"),
    ("X-Auth-Request-Email", "email", "メール"),
    ("X-Samlgate-Category", "category", "施設区分"),
    ("X-Samlgate-Facility-Code", "facility_code", "施設コード"),
    ("X-Samlgate-Facility-Name", "facility_name", "施設名"),
    ("X-Samlgate-Local-User", "local_user", "ローカルユーザー"),
]

PUBLIC_PREFIXES = ("/static/",)


class BadHeader(Exception):
    pass


def identity(headers):
    """The user from the gateway's headers: a dict, or None when there is no user header."""
    users = headers.get_all("X-Auth-Request-User") or []
    if not users:
        return None
    out = {}
    for name, key, _label in IDENTITY:
        values = headers.get_all(name) or []
        if len(values) > 1:
            raise BadHeader("%s appears %d times" % (name, len(values)))
        raw = values[0] if values else ""
        try:
            out[key] = unquote(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise BadHeader("%s is not percent-encoded UTF-8" % name)
    if not out["user"]:
        return None
    return out


class Handler(BaseHTTPRequestHandler):
    server_version = "staff-menu-headers"

    def log_message(self, fmt, *args):
        sys.stderr.write("staff-menu-headers: " + (fmt % args) + "\n")

    def _send(self, status, body, ctype="text/html; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith(PUBLIC_PREFIXES):
            return self._send(200, "/* public file: no login needed */\n", "text/css; charset=utf-8")
        try:
            user = identity(self.headers)
        except BadHeader as e:
            return self._send(400, "<h1>400</h1><p>%s</p>" % html.escape(str(e)))
        if user is None:
            # Only reachable if someone bypassed the gateway (or a public path is misconfigured).
            return self._send(401, "<h1>401</h1><p>not signed in: reach this app through samlgate</p>")
        if "application/json" in (self.headers.get("Accept") or ""):
            return self._send(200, json.dumps(user, ensure_ascii=False), "application/json; charset=utf-8")
        rows = "".join("<dt>%s</dt><dd id=\"%s\">%s</dd>" % (html.escape(label), key, html.escape(user[key]))
                       for _h, key, label in IDENTITY)
        page = ("<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\">"
                "<title>関係者向けメニュー</title><h1>関係者向けメニュー</h1>"
                "<p>ようこそ、<span id=\"hello\">%s</span> さん</p><dl>%s</dl>"
                "<p><a href=\"/logout\">ログアウト</a></p></html>"
                % (html.escape(user["display_name"] or user["user"]), rows))
        return self._send(200, page)

    do_HEAD = do_GET


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT (keep it on loopback)")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    print("staff-menu-headers listening on http://%s" % a.listen, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
