#!/usr/bin/env python3
"""Regenerates the fuzzing fixtures (fuzz/fixtures/) and seed corpora (fuzz/seeds/<target>/).

Run from the repository root with the test venv (scripts/install-deps.sh):

    .venv/bin/python fuzz/make_seeds.py            # seeds only, with the committed fixtures
    .venv/bin/python fuzz/make_seeds.py --new-keys # also new IdP/SP keys (then commit both)

Everything is made by the independent test tools in tests/support/ (signxml, python
`cryptography`), never by the gateway:

- fixtures/idp.crt, idp.key, idp-metadata.xml: the fixed IdP whose metadata the harness trusts;
- fixtures/sp.crt, sp.key: the SP key the harness decrypts with;
- seeds/acs_input: signed Responses (XML, or `SAMLResponse=...` form bodies), valid at the
  harness's fixed instant NOW (fuzz/src/harness.rs), plus the attack and refusal variants;
- seeds/decrypt: EncryptedAssertion responses for fixtures/sp.crt;
- seeds/idp_metadata, slo_redirect, session_token, return_path, prescan.

The harness's oracle for acs_input knows the NameIDs signed here (KNOWN_NAME_IDS in
fuzz/src/harness.rs): keep the two in step.
"""
import argparse
import base64
import datetime as dt
import hashlib
import hmac
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "fuzz")
FIX = os.path.join(FUZZ, "fixtures")
SEEDS = os.path.join(FUZZ, "seeds")
PY = sys.executable
IDP = os.path.join(ROOT, "tests/support/saml_idp.py")
ENC = os.path.join(ROOT, "tests/support/saml_encrypt.py")
SLO = os.path.join(ROOT, "tests/support/slo_tool.py")

# Keep in step with fuzz/src/harness.rs.
NOW = dt.datetime(2026, 6, 1, 0, 0, 0, tzinfo=dt.timezone.utc)
IDP_ENTITY = "https://gmis-idp.test/idp"
SP_ENTITY = "https://gw.fuzz.test/saml/metadata"
ACS = "https://gw.fuzz.test/saml/acs"
SLO_URL = "https://gw.fuzz.test/saml/slo"
REQUEST_ID = "_req_fuzz_0001"
SESSION_KEY = bytes([0x5A]) * 32


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, **kw)
    if r.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r.stdout


def offset():
    """--time-offset that puts the IdP's "now" at NOW."""
    return str(int((NOW - dt.datetime.now(dt.timezone.utc)).total_seconds()))


def response(extra, xml=True):
    args = [PY, IDP, "response", "--sp-entity", SP_ENTITY, "--acs", ACS,
            "--key", os.path.join(FIX, "idp.key"), "--cert", os.path.join(FIX, "idp.crt"),
            "--time-offset", offset()] + extra
    if xml:
        args.append("--xml")
    return run(args)


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def form(xml_bytes, relay="/menu?x=1"):
    b64 = base64.b64encode(xml_bytes).decode()
    body = "SAMLResponse=" + urllib.parse.quote_plus(b64)
    if relay is not None:
        body += "&RelayState=" + urllib.parse.quote_plus(relay)
    return body


def new_keys():
    os.makedirs(FIX, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        run([PY, IDP, "keygen", "--out", t, "--cn", "gmis-idp.test"])
        shutil.copy(os.path.join(t, "idp.key"), os.path.join(FIX, "idp.key"))
        shutil.copy(os.path.join(t, "idp.crt"), os.path.join(FIX, "idp.crt"))
        run([PY, IDP, "keygen", "--out", t, "--cn", "gw.fuzz.test"])
        shutil.copy(os.path.join(t, "idp.key"), os.path.join(FIX, "sp.key"))
        shutil.copy(os.path.join(t, "idp.crt"), os.path.join(FIX, "sp.crt"))
    run([PY, IDP, "metadata", "--cert", os.path.join(FIX, "idp.crt"), "--entity-id", IDP_ENTITY,
         "--out", os.path.join(FIX, "idp-metadata.xml")])


def encrypt(plain_xml, extra):
    with tempfile.TemporaryDirectory() as t:
        i, o = os.path.join(t, "in.xml"), os.path.join(t, "out.xml")
        with open(i, "wb") as f:
            f.write(plain_xml)
        run([PY, ENC, "encrypt", "--in", i, "--cert", os.path.join(FIX, "sp.crt"), "--out", o]
            + extra)
        with open(o, "rb") as f:
            return f.read()


def acs_seeds():
    ok = [
        ("ok-both.xml", ["--nameid", "GM0000001"]),
        ("ok-response-signed.xml", ["--nameid", "GM0000002", "--sign", "response"]),
        ("ok-assertion-signed.xml", ["--nameid", "GM0000003", "--sign", "assertion"]),
        ("ok-solicited.xml", ["--nameid", "GM0000004", "--in-response-to", REQUEST_ID]),
        ("ok-sha512.xml", ["--nameid", "GM0000005", "--sig-alg", "rsa-sha512"]),
        ("ok-comment-in-nameid.xml", ["--nameid", "GM0000006.x", "--comment-in-nameid"]),
        ("ok-cdata-in-nameid.xml", ["--nameid", "GM0000007.y", "--cdata-in-nameid"]),
        ("ok-charref-in-nameid.xml", ["--nameid", "GM0000008", "--charref-in-nameid"]),
        ("ok-xmlsec1-signer.xml", ["--nameid", "GM0000009", "--signer", "xmlsec1"]),
        ("ok-attrs.xml", ["--nameid", "GM0000010", "--attr", "displayName=山田 & <太郎>",
                          "--attr", "accountCategory=保健所", "--attr", "mail=a@b.c"]),
    ]
    for name, extra in ok:
        put("acs_input", name, response(extra))
    # Form bodies (the raw ACS input), with and without RelayState.
    put("acs_input", "form-both.txt", form(response(["--nameid", "GM0000001"])))
    put("acs_input", "form-no-relay.txt",
        form(response(["--nameid", "GM0000002", "--sign", "assertion"]), relay=None))
    put("acs_input", "form-evil-relay.txt",
        form(response(["--nameid", "GM0000003"]), relay="/%09/evil.example"))
    # Refusals (each reaches a different check).
    refusals = [
        ("expired.xml", ["--nameid", "GM0000001", "--time-offset", str(int(offset()) - 7200)]),
        ("future.xml", ["--nameid", "GM0000001", "--issue-instant-offset", "3600"]),
        ("wrong-audience.xml", ["--nameid", "GM0000001", "--audience", "https://other/sp"]),
        ("no-audience.xml", ["--nameid", "GM0000001", "--no-audience"]),
        ("wrong-recipient.xml", ["--nameid", "GM0000001", "--recipient", "https://other/acs"]),
        ("wrong-destination.xml", ["--nameid", "GM0000001", "--destination", "https://o/acs"]),
        ("status-responder.xml", ["--nameid", "GM0000001", "--status", "Responder"]),
        ("no-bearer.xml", ["--nameid", "GM0000001", "--no-bearer"]),
        ("no-subject-confirmation.xml", ["--nameid", "GM0000001", "--no-subject-confirmation"]),
        ("no-assertion.xml", ["--no-assertion"]),
        ("unsigned.xml", ["--sign", "none"]),
        ("sha1.xml", ["--sig-alg", "rsa-sha1"]),
        ("unknown-irt.xml", ["--in-response-to", "_someone_else"]),
        ("wrong-issuer.xml", ["--issuer", "https://evil.example/idp"]),
    ]
    # --time-offset given twice: argparse keeps the last one.
    for name, extra in refusals:
        put("acs_input", name, response(extra))
    for attack in ["xsw-evil-first", "xsw-evil-after", "xsw-wrap-in-extensions",
                   "xsw-assertion-in-object", "xsw-evil-in-subject", "xsw-evil-in-extensions",
                   "evil-foreign-ns", "evil-nameid-in-extensions", "evil-attrs-after-assertion",
                   "two-signed-assertions", "two-assertions", "extra-encrypted-assertion",
                   "key-substitution", "doctype", "xxe", "billion-laughs", "tamper-nameid"]:
        put("acs_input", "attack-%s.xml" % attack, response(["--attack", attack]))


def decrypt_seeds():
    plain = response(["--nameid", "GM0000011", "--sign", "assertion"])
    variants = [
        ("oaep-cbc-keyinfo.xml", []),
        ("oaep-gcm-keyinfo.xml", ["--data", "aes256-gcm"]),
        ("oaep11-sha256.xml", ["--key-transport", "xmlenc11-rsa-oaep-sha256", "--data",
                               "aes128-gcm"]),
        ("sibling-retrieval.xml", ["--placement", "sibling", "--hint", "keyname",
                                   "--key-name", "sp-key"]),
        ("sibling-noref.xml", ["--placement", "sibling-noref"]),
        ("ds-decl-root.xml", ["--ds-decl", "root"]),
        ("ds-decl-default-ns.xml", ["--ds-decl", "default-ns", "--data", "aes192-cbc"]),
        ("ds-decl-ancestor.xml", ["--ds-decl", "ancestor"]),
        ("lxml-plaintext.xml", ["--plaintext", "lxml", "--pad", "pkcs7"]),
        ("oaep-label.xml", ["--oaep-label", "label", "--hint", "issuer-serial"]),
        ("rsa15.xml", ["--key-transport", "rsa-1_5"]),
        ("tamper-data.xml", ["--tamper", "data"]),
        ("tamper-tag.xml", ["--data", "aes128-gcm", "--tamper", "tag"]),
        ("tamper-key.xml", ["--tamper", "key"]),
    ]
    for name, extra in variants:
        enc = encrypt(plain, extra)
        put("decrypt", name, enc)
        if name in ("oaep-cbc-keyinfo.xml", "oaep-gcm-keyinfo.xml", "sibling-retrieval.xml"):
            put("acs_input", "enc-" + name, enc)
    put("acs_input", "form-enc.txt", form(encrypt(plain, ["--data", "aes128-gcm"])))


def metadata_seeds():
    shutil.copy(os.path.join(FIX, "idp-metadata.xml"), os.path.join(SEEDS, "idp_metadata", "fixture.xml"))
    with tempfile.TemporaryDirectory() as t:
        run([PY, IDP, "keygen", "--out", t, "--cn", "second.test"])
        put("idp_metadata", "two-certs.xml",
            run([PY, IDP, "metadata", "--cert", os.path.join(FIX, "idp.crt"), "--cert",
                 os.path.join(t, "idp.crt"), "--entity-id", IDP_ENTITY, "--out", "-"]))
    md = open(os.path.join(FIX, "idp-metadata.xml")).read()
    put("idp_metadata", "encryption-only.xml", md.replace('use="signing"', 'use="encryption"'))
    put("idp_metadata", "no-use.xml", md.replace(' use="signing"', ""))
    put("idp_metadata", "doctype.xml", md.replace("<md:EntityDescriptor",
                                                  '<!DOCTYPE x [<!ENTITY e "y">]><md:EntityDescriptor', 1))
    put("idp_metadata", "bad-base64.xml", md.replace("<ds:X509Certificate>", "<ds:X509Certificate>!!", 1))


def slo_seeds():
    def run(args):  # the query without the trailing newline
        return globals()["run"](args).strip()
    base = [PY, SLO]
    keys = ["--key", os.path.join(FIX, "idp.key"), "--cert", os.path.join(FIX, "idp.crt")]
    common = ["--issuer", IDP_ENTITY, "--destination", SLO_URL, "--binding", "redirect"]
    put("slo_redirect", "logout-request.txt",
        run(base + ["logout-request"] + common + keys + ["--nameid", "GM0000001",
                                                         "--session-index", "s1",
                                                         "--relay-state", "/after?x=1"]))
    put("slo_redirect", "logout-response.txt",
        run(base + ["logout-response"] + common + keys + ["--in-response-to", "_q1"]))
    put("slo_redirect", "logout-request-sha512.txt",
        run(base + ["logout-request"] + common + keys + ["--nameid", "GM0000002",
                                                         "--sig-alg", "rsa-sha512"]))
    put("slo_redirect", "unsigned.txt",
        run(base + ["logout-request"] + common + ["--nameid", "GM1", "--unsigned"]))
    put("slo_redirect", "sha1.txt",
        run(base + ["logout-request"] + common + keys + ["--nameid", "GM1", "--sig-alg",
                                                         "rsa-sha1"]))
    put("slo_redirect", "bomb-signed.txt",
        run(base + ["logout-request"] + common + keys + ["--nameid", "GM1", "--bomb",
                                                         "1000000"]))
    # Raw DEFLATE (the inflate entry point) and plain XML (the parser).
    xml = ('<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
           'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_l1" Version="2.0" '
           'IssueInstant="2026-06-01T00:00:00Z" Destination="%s"><saml:Issuer>%s</saml:Issuer>'
           '<saml:NameID>GM&amp;1</saml:NameID><samlp:SessionIndex><![CDATA[s1]]>'
           '</samlp:SessionIndex></samlp:LogoutRequest>' % (SLO_URL, IDP_ENTITY))
    put("slo_redirect", "logout-request.xml", xml)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    put("slo_redirect", "deflate-xml.bin", c.compress(xml.encode()) + c.flush())
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    put("slo_redirect", "deflate-bomb.bin", c.compress(b"a" * (4 << 20)) + c.flush())


def token_seeds():
    def seal(i):
        payload = "v1." + i
        tag = hmac.new(SESSION_KEY, payload.encode(), hashlib.sha256).digest()
        return payload + "." + base64.urlsafe_b64encode(tag).decode().rstrip("=")
    put("session_token", "valid.txt", seal("AAAAAAAAAAAAAAAAAAAAAA"))
    put("session_token", "valid2.txt", seal("q83vEjRWeJCrze8SNFZ4kA"))
    put("session_token", "cookie-header.txt",
        "a=1; samlgate=%s; samlgate2=x; __Host-samlgate=y" % seal("xyzxyzxyzxyzxyzxyzxyzA"))
    put("session_token", "bad-mac.txt", seal("AAAAAAAAAAAAAAAAAAAAAA")[:-2] + "AA")
    put("session_token", "dots.txt", "v1.a.b.c")


def return_path_seeds():
    for i, s in enumerate(["/staff/menu?x=1", "//evil.example", "/\\evil", "/%2F%2Fevil",
                           "/%5cevil", "/%09/evil.example", "/%0D%0A/evil", "javascript:alert(1)",
                           "return_to=/a?x=1&y=2", "return_to=%2Fa%3Fx%3D1",
                           "lang=en&return_to=%2Fb", "return_to=%2F%2Fevil", "/%E3%81%82",
                           "/%C0%AF/evil", "/%252F%252Fevil"]):
        put("return_path", "p%02d.txt" % i, s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-keys", action="store_true")
    a = ap.parse_args()
    if a.new_keys or not os.path.exists(os.path.join(FIX, "idp.key")):
        new_keys()
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    for t in ["acs_input", "decrypt", "idp_metadata", "slo_redirect", "session_token",
              "return_path", "prescan"]:
        os.makedirs(os.path.join(SEEDS, t), exist_ok=True)
    acs_seeds()
    decrypt_seeds()
    metadata_seeds()
    slo_seeds()
    token_seeds()
    return_path_seeds()
    # prescan: every XML seed of acs_input and decrypt.
    for t in ("acs_input", "decrypt"):
        for n in os.listdir(os.path.join(SEEDS, t)):
            if n.endswith(".xml"):
                shutil.copy(os.path.join(SEEDS, t, n), os.path.join(SEEDS, "prescan", t + "-" + n))
    print("seeds in %s" % SEEDS)


if __name__ == "__main__":
    main()
