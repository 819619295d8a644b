"""Verify samlgate's signed identity token (the `X-Samlgate-Jwt` header) with PyJWT.

samlgate adds `X-Samlgate-Jwt` to every request it proxies to the staff menu (and to its
`/auth/verify` answers when `[token]` is configured). The token is a JWS compact JWT, ES256
(ECDSA P-256 / SHA-256), with a `kid` naming a key in `GET <public_url>/.well-known/jwks.json`.

What `JwksVerifier.verify` checks, and why:
- the header's `alg` is ES256 (nothing else is accepted: no `none`, no HS256 made with the
  public key as a shared secret);
- the `kid` names a key of the JWKS (EC, P-256, ES256); an unknown `kid` makes ONE refresh of
  the JWKS (a key rotation: samlgate publishes a `next` key before it signs with it), at most
  once per `min_refresh_seconds`, so a flood of made-up kids cannot make us hammer the gateway;
- the signature, then `exp`, `nbf`, `iat`, `iss` (the gateway's public_url), `aud` (`[token]
  audience`, by default the `[upstream] url`), and that `sub` and `sid` are present.

The trade-off of a self-verified token: it cannot see a logout or a revocation until it
expires (`[token] lifetime_seconds`, 300 by default). Behind samlgate's proxy every request
carries a fresh token, so keep the lifetime short and do not store the token.

Only the standard library and PyJWT (with `cryptography` for ES256) are needed:
    pip install PyJWT cryptography
"""

import json
import threading
import time
import urllib.request

import jwt
from jwt import PyJWK

ALGORITHMS = ["ES256"]
REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "iat", "nbf", "exp"]


class UnknownKeyError(jwt.InvalidTokenError):
    """The token's kid is not in the JWKS, even after a refresh."""


class JwksVerifier:
    def __init__(self, jwks_url, issuer, audience, leeway=5, min_refresh_seconds=10.0,
                 max_age_seconds=300.0, timeout=5.0):
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self.timeout = timeout
        self.fetches = 0  # how many times the JWKS was fetched (for tests and metrics)
        self._keys = {}
        self._fetched_at = None
        self._lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------------
    def _fetch(self):
        self.fetches += 1
        self._fetched_at = time.monotonic()
        req = urllib.request.Request(self.jwks_url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            doc = json.loads(r.read().decode("utf-8"))
        keys = {}
        for k in doc.get("keys", []):
            if (k.get("kty"), k.get("crv"), k.get("alg", "ES256")) != ("EC", "P-256", "ES256"):
                continue
            if k.get("use", "sig") != "sig" or not k.get("kid") or "d" in k:
                continue
            keys[k["kid"]] = PyJWK(k, algorithm="ES256")
        self._keys = keys

    def _refresh(self):
        try:
            self._fetch()
        except Exception:
            # Keep serving with the keys we have; an unknown kid still fails below.
            if not self._keys:
                raise

    def key_for(self, kid):
        with self._lock:
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at > self.max_age_seconds
            if stale:
                self._refresh()
            elif kid not in self._keys and now - self._fetched_at >= self.min_refresh_seconds:
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise UnknownKeyError("token key %r is not in %s" % (kid, self.jwks_url))
        return key

    # -- tokens -------------------------------------------------------------------------------
    def verify(self, token, leeway=None):
        """The token's claims, or a `jwt.InvalidTokenError` (subclass says why)."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in ALGORITHMS:
            raise jwt.InvalidAlgorithmError("alg %r is not allowed" % header.get("alg"))
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("the token has no kid")
        key = self.key_for(kid)
        return jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway if leeway is None else leeway,
            options={"require": REQUIRED_CLAIMS},
        )
