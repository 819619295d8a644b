"""A real SMTP server on loopback for the mail tests (aiosmtpd), independent of lettre.

Each accepted message is parsed with Python's own `email` package and written as
DIR/NNNN.json: envelope sender and recipients, decoded Subject, From, To and the decoded
text body. Prints "ready PORT" on stdout once it listens; runs until killed.

  smtp_sink.py --dir DIR --port PORT [--tls none|starttls|implicit --cert C --key K]
"""

import argparse
import email
import email.header
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        self.n += 1
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "content_type": msg.get_content_type(),
            "charset": body.get_content_charset() if body is not None else None,
            "body": body.get_content() if body is not None else "",
            "tls": server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None,
        }
        tmp = os.path.join(self.out, f".{self.n:04d}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(rec, f, ensure_ascii=False)
        os.rename(tmp, os.path.join(self.out, f"{self.n:04d}.json"))
        return "250 OK"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", default="none", choices=["none", "starttls", "implicit"])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    ctx = None
    if a.tls != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    kw = {}
    if a.tls == "starttls":
        kw = {"tls_context": ctx, "require_starttls": True}
    elif a.tls == "implicit":
        kw = {"ssl_context": ctx}
    c = Controller(Sink(a.dir), hostname="127.0.0.1", port=a.port, **kw)
    c.start()
    print(f"ready {a.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()


if __name__ == "__main__":
    sys.exit(main())
