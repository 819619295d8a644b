#!/usr/bin/env python3
"""A staff-menu stand-in that trusts only samlgate's signed token (X-Samlgate-Jwt).

It ignores the plain identity headers: every request must carry a token that verifies against
the gateway's JWKS (see samlgate_jwt.py). Run it behind `samlgate` with `[upstream]` and
`[token]` configured (README.md beside this file).
"""

import argparse
import html
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True  # no __pycache__ beside the example
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jwt  # noqa: E402
from samlgate_jwt import JwksVerifier  # noqa: E402

FIELDS = [
    ("sub", "G-MIS ID"),
    ("display_name", "氏名"),
    ("email", "メール"),
    ("category", "施設区分"),
    ("facility_code", "施設コード"),
    ("facility_name", "施設名"),
    ("local_user", "ローカルユーザー"),
    ("exp", "トークン有効期限 (exp)"),
]


def make_handler(verifier):
    class Handler(BaseHTTPRequestHandler):
        server_version = "staff-menu-jwt"

        def log_message(self, fmt, *args):
            sys.stderr.write("staff-menu-jwt: " + (fmt % args) + "\n")

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
            tokens = self.headers.get_all("X-Samlgate-Jwt") or []
            if len(tokens) != 1:
                return self._send(401, "<h1>401</h1><p>no (or more than one) X-Samlgate-Jwt</p>")
            try:
                claims = verifier.verify(tokens[0].strip())
            except jwt.InvalidTokenError as e:
                reason = "%s: %s" % (type(e).__name__, e)
                return self._send(401, "<h1>401</h1><p id=\"reason\">%s</p>" % html.escape(reason))
            if "application/json" in (self.headers.get("Accept") or ""):
                return self._send(200, json.dumps(claims, ensure_ascii=False),
                                  "application/json; charset=utf-8")
            rows = "".join(
                "<dt>%s</dt><dd id=\"%s\">%s</dd>" % (html.escape(label), k,
                                                      html.escape(str(claims.get(k, ""))))
                for k, label in FIELDS)
            page = ("<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\">"
                    "<title>関係者向けメニュー</title><h1>関係者向けメニュー (JWT)</h1>"
                    "<p>ようこそ、<span id=\"hello\">%s</span> さん</p><dl>%s</dl>"
                    "<p><a href=\"/logout\">ログアウト</a></p></html>"
                    % (html.escape(claims.get("display_name") or claims["sub"]), rows))
            return self._send(200, page)

        do_HEAD = do_GET

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT (keep it on loopback)")
    ap.add_argument("--gateway", default="http://127.0.0.1:8080",
                    help="samlgate's public_url: the token's iss, and where the JWKS is")
    ap.add_argument("--jwks-url", default=None,
                    help="default: GATEWAY/.well-known/jwks.json")
    ap.add_argument("--audience", default=None,
                    help="the token's aud: [token] audience, else samlgate's [upstream] url "
                         "(default: http://LISTEN)")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    verifier = JwksVerifier(
        a.jwks_url or a.gateway.rstrip("/") + "/.well-known/jwks.json",
        issuer=a.gateway.rstrip("/"),
        audience=a.audience or "http://" + a.listen,
    )
    srv = ThreadingHTTPServer((host, int(port)), make_handler(verifier))
    print("staff-menu-jwt listening on http://%s" % a.listen, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
