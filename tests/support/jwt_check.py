#!/usr/bin/env python3
"""Independent checks of samlgate's X-Samlgate-Jwt with python PyJWT (used by tests/proxy.rs).

The verifier under test is the example staff menu's (examples/staff-menu-jwt/samlgate_jwt.py,
PyJWT + the gateway's JWKS); PyJWT's own PyJWKClient is used beside it as a second, unrelated
key fetcher. Nothing here trusts samlgate's code: keys come from /.well-known/jwks.json over
HTTP, and the forged tokens are made with `cryptography`.

Commands (each prints one JSON object on stdout):
  suite   --jwks-url U --issuer I --audience A --token T [--token T2 ...] --keys-dir D
          every positive and negative case; the Rust test asserts the outcomes.
  verify  --jwks-url U --issuer I --audience A --token T [--token ...] [--leeway N]
          one fresh verifier (one JWKS fetch) verifies each token in turn.
Outcomes are {"ok": true, "claims": {...}, "header": {...}} or {"ok": false, "error": "<PyJWT
exception class>", "message": "..."}.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the example
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "staff-menu-jwt"))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from samlgate_jwt import JwksVerifier  # noqa: E402


class clock:
    """Moves PyJWT's notion of "now" by `offset` seconds inside a `with` block."""

    def __init__(self, offset):
        self.offset = offset

    def __enter__(self):
        offset = self.offset

        class Shifted(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.datetime.now(tz) + datetime.timedelta(seconds=offset)

        self.saved = jwt.api_jwt.datetime
        jwt.api_jwt.datetime = Shifted
        return self

    def __exit__(self, *exc):
        jwt.api_jwt.datetime = self.saved
        return False


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def outcome(fn):
    try:
        claims = fn()
        return {"ok": True, "claims": claims}
    except jwt.InvalidTokenError as e:
        return {"ok": False, "error": type(e).__name__, "message": str(e)}
    except jwt.PyJWKClientError as e:
        return {"ok": False, "error": type(e).__name__, "message": str(e)}


def split(token):
    h, p, s = token.split(".")
    return json.loads(b64u_dec(h)), json.loads(b64u_dec(p)), s


def with_payload(token, payload):
    """The token with its payload replaced and the ORIGINAL signature kept."""
    h, _p, s = token.split(".")
    return "%s.%s.%s" % (h, b64u(json.dumps(payload, separators=(",", ":")).encode()), s)


def es256(key, header, payload):
    """A JWS signed by `key` (cryptography EC private key), built by hand (not by samlgate)."""
    signing_input = "%s.%s" % (b64u(json.dumps(header).encode()), b64u(json.dumps(payload).encode()))
    sig = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(signing_input.encode(), key)
    return signing_input + "." + b64u(sig)


def suite(a):
    out = {}
    now = int(time.time())
    tokens = a.token
    header, payload, sig = split(tokens[0])
    out["header"] = header
    out["payload"] = payload

    v = JwksVerifier(a.jwks_url, a.issuer, a.audience, leeway=0, min_refresh_seconds=0)
    out["valid"] = [outcome(lambda t=t: v.verify(t)) for t in tokens]
    out["valid_again"] = outcome(lambda: v.verify(tokens[0]))
    out["fetches_after_valid"] = v.fetches  # cached: one fetch for all of the above

    # PyJWT's own JWKS client, as a second opinion on the same token.
    def with_pyjwkclient():
        client = jwt.PyJWKClient(a.jwks_url, cache_keys=False)
        key = client.get_signing_key_from_jwt(tokens[0])
        return jwt.decode(tokens[0], key.key, algorithms=["ES256"], audience=a.audience,
                          issuer=a.issuer, options={"require": ["exp", "iat", "nbf", "sub"]})
    out["pyjwkclient"] = outcome(with_pyjwkclient)

    # Tampering: the gateway's signature over different claims.
    p = dict(payload)
    p["exp"] = payload["exp"] + 3600
    out["tampered_exp"] = outcome(lambda: v.verify(with_payload(tokens[0], p)))
    p = dict(payload)
    p["sub"] = "admin"
    out["tampered_sub"] = outcome(lambda: v.verify(with_payload(tokens[0], p)))
    raw = bytearray(b64u_dec(sig))
    raw[5] ^= 0x01
    h, pl, _s = tokens[0].split(".")
    out["tampered_signature"] = outcome(lambda: v.verify("%s.%s.%s" % (h, pl, b64u(bytes(raw)))))
    out["truncated"] = outcome(lambda: v.verify(h + "." + pl + "."))

    # Algorithm games.
    none_tok = "%s.%s." % (b64u(json.dumps({"alg": "none", "typ": "JWT", "kid": header["kid"]}).encode()), pl)
    out["alg_none"] = outcome(lambda: v.verify(none_tok))
    # HS256 with the published public key as the HMAC secret (the classic key-confusion attack).
    jwk = next(k for k in json.loads(fetch(a.jwks_url))["keys"] if k["kid"] == header["kid"])
    pub_pem = jwt.PyJWK(jwk, algorithm="ES256").key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_head = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}).encode())
    mac = hmac.new(pub_pem, ("%s.%s" % (hs_head, pl)).encode(), hashlib.sha256).digest()
    out["alg_hs256_public_key"] = outcome(lambda: v.verify("%s.%s.%s" % (hs_head, pl, b64u(mac))))

    # Time: the real token, seen by a verifier whose clock is past its exp (PyJWT's clock moved
    # on), and just before its exp; and PyJWT's plain decode with a negative leeway of the same
    # size (iat/nbf checks off: a negative leeway would trip them first).
    with clock(payload["exp"] - now + 1):
        out["expired_by_clock"] = outcome(lambda: v.verify(tokens[0]))
    with clock(payload["exp"] - now - 2):
        out["valid_two_seconds_before_exp"] = outcome(lambda: v.verify(tokens[0]))
    gw_pub = v.key_for(header["kid"]).key
    out["expired_by_negative_leeway"] = outcome(lambda: jwt.decode(
        tokens[0], gw_pub, algorithms=["ES256"], audience=a.audience, issuer=a.issuer,
        leeway=-(payload["exp"] - now + 1), options={"verify_iat": False, "verify_nbf": False}))

    # Tokens re-signed with the gateway's own active key (read from [token] keys_dir): the
    # control verifies, so the refusals below are about the claims, not the signing.
    with open(os.path.join(a.keys_dir, header["kid"] + ".key"), "rb") as f:
        gw_key = serialization.load_pem_private_key(f.read(), password=None)
    ctl = dict(payload)
    out["resigned_control"] = outcome(lambda: v.verify(es256(gw_key, header, ctl)))
    exp = dict(payload, iat=now - 400, nbf=now - 400, exp=now - 100)
    out["resigned_expired"] = outcome(lambda: v.verify(es256(gw_key, header, exp)))
    nbf = dict(payload, nbf=now + 300, exp=now + 600)
    out["resigned_not_yet_valid"] = outcome(lambda: v.verify(es256(gw_key, header, nbf)))
    no_exp = dict(payload)
    del no_exp["exp"]
    out["resigned_without_exp"] = outcome(lambda: v.verify(es256(gw_key, header, no_exp)))

    out["wrong_audience"] = outcome(
        lambda: JwksVerifier(a.jwks_url, a.issuer, "https://other.example", leeway=0).verify(tokens[0]))
    out["wrong_issuer"] = outcome(
        lambda: JwksVerifier(a.jwks_url, "https://other.example", a.audience, leeway=0).verify(tokens[0]))

    # Foreign keys: a fresh P-256 key under an unknown kid, and under the gateway's own kid.
    foreign = ec.generate_private_key(ec.SECP256R1())
    throttled = JwksVerifier(a.jwks_url, a.issuer, a.audience, leeway=0, min_refresh_seconds=60)
    throttled.verify(tokens[0])
    unk = es256(foreign, dict(header, kid="unknown-kid-1"), payload)
    unk2 = es256(foreign, dict(header, kid="unknown-kid-2"), payload)
    out["unknown_kid"] = outcome(lambda: throttled.verify(unk))
    out["unknown_kid_again"] = outcome(lambda: throttled.verify(unk2))
    out["fetches_after_unknown_kids_throttled"] = throttled.fetches
    eager = JwksVerifier(a.jwks_url, a.issuer, a.audience, leeway=0, min_refresh_seconds=0)
    eager.verify(tokens[0])
    out["unknown_kid_eager"] = outcome(lambda: eager.verify(unk))
    out["fetches_after_unknown_kid_eager"] = eager.fetches
    out["foreign_key_same_kid"] = outcome(lambda: v.verify(es256(foreign, header, payload)))
    return out


def fetch(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode("utf-8")


def verify_cmd(a):
    v = JwksVerifier(a.jwks_url, a.issuer, a.audience, leeway=a.leeway, min_refresh_seconds=0)
    res = []
    for t in a.token:
        r = outcome(lambda t=t: v.verify(t))
        r["header"] = jwt.get_unverified_header(t)
        res.append(r)
    return {"results": res, "fetches": v.fetches}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("suite", "verify"):
        s = sub.add_parser(name)
        s.add_argument("--jwks-url", required=True)
        s.add_argument("--issuer", required=True)
        s.add_argument("--audience", required=True)
        s.add_argument("--token", action="append", required=True)
        if name == "suite":
            s.add_argument("--keys-dir", required=True, help="[token] keys_dir (to re-sign test tokens)")
        else:
            s.add_argument("--leeway", type=int, default=0)
    a = ap.parse_args()
    out = suite(a) if a.cmd == "suite" else verify_cmd(a)
    json.dump(out, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
