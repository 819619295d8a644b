#!/usr/bin/env python3
"""SAML binding helpers for samlgate's SP-initiated login and single-logout tests.

Independent of the gateway: signatures are checked with `cryptography`, XML is parsed with lxml,
enveloped signatures are made with signxml (the same stack as saml_idp.py, sharing no code with
the gateway's openssl/xmlsec/quick-xml path).

Sub-commands:

  verify-redirect --cert CRT [--cert CRT ...] --query RAW
        Verifies an HTTP-Redirect binding message (SAML bindings 3.4.4.1): the signature over
        `SAMLRequest|SAMLResponse=v[&RelayState=v]&SigAlg=v` built from the query octets exactly
        as given, with any of the certificates (PEM file, or a file holding the bare base64 DER
        of a metadata <X509Certificate>). Then inflates the message and parses it with lxml.
        Prints JSON {param, relay_state, sig_alg, xml, fields}; exit 1 (reason on stderr) when
        the signature does not verify, 2 on malformed input.

  logout-request --issuer ID --destination URL --nameid V [options] --binding redirect|post
        A LogoutRequest from the IdP. Redirect: prints the query string (SAMLRequest, RelayState,
        SigAlg, Signature; signed over those octets). POST: prints the base64 of the
        signxml-signed (enveloped, exc-c14n, rsa-sha256) XML, one line.

  logout-response --issuer ID --destination URL --in-response-to ID [options] --binding ...
        The same for a LogoutResponse.

  resign-response --in FILE --key KEY --cert CRT [--session-not-on-or-after S]
        Reads a Response (e.g. `saml_idp.py response --sign none --xml`), sets every
        AuthnStatement SessionNotOnOrAfter to now + S seconds, signs the Assertion and the
        Response with signxml, prints the base64 (one line).

Message options (logout-request / logout-response):
  --key/--cert      the signer (IdP key); --wrong-key signs with a fresh key instead (its
                    certificate goes into KeyInfo for POST, so a verifier that trusts KeyInfo
                    would accept it)
  --unsigned        no signature (Redirect: no SigAlg/Signature; POST: no ds:Signature)
  --tamper          sign, then change the NameID (request) / StatusCode (response)
  --tamper-relay    Redirect: sign, then change RelayState
  --sig-alg         rsa-sha256 (default) | rsa-sha1 | rsa-sha512
  --bomb N          Redirect: SAMLRequest is a DEFLATE of N zero bytes (still signed unless
                    --unsigned)
  --doctype         POST: put a DOCTYPE with an internal entity in front (after signing)
"""
import argparse
import base64
import datetime as dt
import json
import sys
import urllib.parse
import uuid
import zlib

from lxml import etree

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

SIG_ALG_URIS = {
    "rsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "rsa-sha1": "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "rsa-sha512": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
}


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def now():
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def die(msg, code=2):
    print("slo_tool.py: " + msg, file=sys.stderr)
    sys.exit(code)


def hash_for(uri):
    from cryptography.hazmat.primitives import hashes
    return {
        SIG_ALG_URIS["rsa-sha256"]: hashes.SHA256,
        SIG_ALG_URIS["rsa-sha1"]: hashes.SHA1,
        SIG_ALG_URIS["rsa-sha512"]: hashes.SHA512,
    }.get(uri)


# --------------------------------------------------------------------------- keys

def load_cert(path):
    from cryptography import x509
    with open(path, "rb") as f:
        data = f.read()
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data)
    der = base64.b64decode(b"".join(data.split()))
    return x509.load_der_x509_certificate(der)


def load_key(path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    with open(path, "rb") as f:
        return load_pem_private_key(f.read(), password=None)


def fresh_keypair(cn="attacker.example"):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    t = now() - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(t).not_valid_after(t + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return key, cert


def signer_keys(a):
    if a.wrong_key:
        return fresh_keypair()
    if not a.key or not a.cert:
        die("--key and --cert are needed unless --unsigned or --wrong-key")
    return load_key(a.key), load_cert(a.cert)


# --------------------------------------------------------------------------- parsing

def inspect(xml_bytes):
    """Fields of a SAML protocol message, read with lxml (no entities, no network)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(xml_bytes, parser)
    f = {"root": etree.QName(root).localname, "root_ns": etree.QName(root).namespace or ""}
    for attr in ("ID", "Version", "IssueInstant", "Destination", "AssertionConsumerServiceURL",
                 "ProtocolBinding", "InResponseTo", "NotOnOrAfter", "ForceAuthn", "IsPassive"):
        if root.get(attr) is not None:
            f[attr] = root.get(attr)
    children = []
    for c in root:
        if isinstance(c.tag, str):
            children.append(etree.QName(c).localname)
    f["children"] = children
    iss = root.find(q(NS_SAML, "Issuer"))
    if iss is not None:
        f["Issuer"] = iss.text or ""
    nip = root.find(q(NS_SAMLP, "NameIDPolicy"))
    if nip is not None:
        f["NameIDPolicy.Format"] = nip.get("Format") or ""
        f["NameIDPolicy.AllowCreate"] = nip.get("AllowCreate") or ""
    nid = root.find(q(NS_SAML, "NameID"))
    if nid is not None:
        f["NameID"] = nid.text or ""
        f["NameID.Format"] = nid.get("Format") or ""
    f["SessionIndex"] = [s.text or "" for s in root.findall(q(NS_SAMLP, "SessionIndex"))]
    sc = root.find("%s/%s" % (q(NS_SAMLP, "Status"), q(NS_SAMLP, "StatusCode")))
    if sc is not None:
        f["StatusCode"] = sc.get("Value") or ""
    f["has_xml_signature"] = root.find(q(NS_DS, "Signature")) is not None
    return f


def split_raw_query(raw):
    """name -> raw (still URL-encoded) value; refuses duplicates."""
    out = {}
    order = []
    for part in raw.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        if k in out:
            die("%s given twice" % k)
        out[k] = v
        order.append(k)
    return out, order


def cmd_verify_redirect(a):
    raw = a.query
    if raw.startswith("?"):
        raw = raw[1:]
    vals, order = split_raw_query(raw)
    params = [p for p in ("SAMLRequest", "SAMLResponse") if p in vals]
    if len(params) != 1:
        die("want exactly one of SAMLRequest/SAMLResponse, got %r" % params)
    param = params[0]
    if "SigAlg" not in vals or "Signature" not in vals:
        die("unsigned: SigAlg or Signature missing", 1)
    # The signed octets in the order the binding defines, as received (no re-encoding).
    signed = "%s=%s" % (param, vals[param])
    if "RelayState" in vals:
        signed += "&RelayState=%s" % vals["RelayState"]
    signed += "&SigAlg=%s" % vals["SigAlg"]
    sig_alg = urllib.parse.unquote_plus(vals["SigAlg"])
    h = hash_for(sig_alg)
    if h is None:
        die("SigAlg %s not supported" % sig_alg, 1)
    try:
        sig = base64.b64decode(urllib.parse.unquote_plus(vals["Signature"]), validate=True)
    except Exception as e:  # noqa: BLE001
        die("Signature is not base64: %s" % e, 1)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding
    ok_with = None
    for path in a.cert:
        pk = load_cert(path).public_key()
        try:
            pk.verify(sig, signed.encode("ascii"), padding.PKCS1v15(), h())
            ok_with = path
            break
        except InvalidSignature:
            continue
    if ok_with is None:
        die("signature does not verify with %s" % ", ".join(a.cert), 1)
    try:
        xml = zlib.decompress(base64.b64decode(urllib.parse.unquote_plus(vals[param])), -15)
    except Exception as e:  # noqa: BLE001
        die("message does not inflate: %s" % e)
    out = {
        "param": param,
        "param_order": order,
        "relay_state": urllib.parse.unquote_plus(vals["RelayState"]) if "RelayState" in vals else None,
        "sig_alg": sig_alg,
        "verified_with": ok_with,
        "xml": xml.decode("utf-8"),
        "fields": inspect(xml),
    }
    print(json.dumps(out))


# --------------------------------------------------------------------------- building

def new_id():
    return "_" + uuid.uuid4().hex


def build_logout_request(a):
    t = now() + dt.timedelta(seconds=a.issue_instant_offset)
    R = etree.Element(q(NS_SAMLP, "LogoutRequest"), nsmap={"samlp": NS_SAMLP, "saml": NS_SAML})
    R.set("ID", a.id or new_id())
    R.set("Version", "2.0")
    R.set("IssueInstant", ts(t))
    if a.destination != "none":
        R.set("Destination", a.destination)
    if a.not_on_or_after is not None:
        R.set("NotOnOrAfter", ts(now() + dt.timedelta(seconds=a.not_on_or_after)))
    etree.SubElement(R, q(NS_SAML, "Issuer")).text = a.issuer
    nid = etree.SubElement(R, q(NS_SAML, "NameID"))
    if a.nameid_format != "none":
        nid.set("Format", a.nameid_format)
    nid.text = a.nameid
    for si in a.session_index or []:
        etree.SubElement(R, q(NS_SAMLP, "SessionIndex")).text = si
    return R


def build_logout_response(a):
    t = now() + dt.timedelta(seconds=a.issue_instant_offset)
    R = etree.Element(q(NS_SAMLP, "LogoutResponse"), nsmap={"samlp": NS_SAMLP, "saml": NS_SAML})
    R.set("ID", a.id or new_id())
    R.set("Version", "2.0")
    R.set("IssueInstant", ts(t))
    if a.destination != "none":
        R.set("Destination", a.destination)
    R.set("InResponseTo", a.in_response_to)
    etree.SubElement(R, q(NS_SAML, "Issuer")).text = a.issuer
    st = etree.SubElement(R, q(NS_SAMLP, "Status"))
    etree.SubElement(st, q(NS_SAMLP, "StatusCode")).set(
        "Value", "urn:oasis:names:tc:SAML:2.0:status:" + a.status)
    return R


def tamper_xml(R):
    nid = R.find(q(NS_SAML, "NameID"))
    if nid is not None:
        nid.text = (nid.text or "") + "X"
        return
    sc = R.find(".//" + q(NS_SAMLP, "StatusCode"))
    sc.set("Value", "urn:oasis:names:tc:SAML:2.0:status:Responder")


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def enc(s):
    return urllib.parse.quote_plus(s, safe="")


def redirect_query(a, param, R):
    xml = etree.tostring(R, encoding="UTF-8", xml_declaration=False)
    payload = deflate(b"\0" * a.bomb) if a.bomb else deflate(xml)
    query = "%s=%s" % (param, enc(base64.b64encode(payload).decode()))
    if a.relay_state is not None:
        query += "&RelayState=%s" % enc(a.relay_state)
    if a.unsigned:
        return query
    from cryptography.hazmat.primitives.asymmetric import padding
    alg = SIG_ALG_URIS[a.sig_alg]
    query += "&SigAlg=%s" % enc(alg)
    key, _cert = signer_keys(a)
    sig = key.sign(query.encode("ascii"), padding.PKCS1v15(), hash_for(alg)())
    query += "&Signature=%s" % enc(base64.b64encode(sig).decode())
    if a.tamper:
        # swap the signed message for a changed one, keep SigAlg and Signature
        tamper_xml(R)
        xml2 = etree.tostring(R, encoding="UTF-8", xml_declaration=False)
        old = query.split("&", 1)
        query = "%s=%s&%s" % (param, enc(base64.b64encode(deflate(xml2)).decode()), old[1])
    if a.tamper_relay:
        if a.relay_state is None:
            die("--tamper-relay needs --relay-state")
        query = query.replace("&RelayState=%s" % enc(a.relay_state),
                              "&RelayState=%s" % enc(a.relay_state + "-changed"), 1)
    return query


class _Signer:
    _cls = None

    @classmethod
    def get(cls):
        if cls._cls is None:
            from signxml import XMLSigner

            class S(XMLSigner):
                def check_deprecated_methods(self):  # allow rsa-sha1 for negative tests
                    pass
            cls._cls = S
        return cls._cls


def xml_sign(el, key, cert, sig_alg="rsa-sha256"):
    """Enveloped signature right after saml:Issuer (schema position), exc-c14n, sha-256."""
    from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
    iss = el.find(q(NS_SAML, "Issuer"))
    ph = etree.Element(q(NS_DS, "Signature"), nsmap={"ds": NS_DS})
    ph.set("Id", "placeholder")
    iss.addnext(ph)
    sm = {"rsa-sha256": SignatureMethod.RSA_SHA256, "rsa-sha1": SignatureMethod.RSA_SHA1,
          "rsa-sha512": SignatureMethod.RSA_SHA512}[sig_alg]
    dg = DigestAlgorithm.SHA1 if sig_alg == "rsa-sha1" else DigestAlgorithm.SHA256
    signer = _Signer.get()(signature_algorithm=sm, digest_algorithm=dg,
                           c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    return signer.sign(el, key=key, cert=[cert], reference_uri=el.get("ID"), id_attribute="ID")


def post_value(a, R):
    if not a.unsigned:
        key, cert = signer_keys(a)
        R = xml_sign(R, key, cert, a.sig_alg)
        if a.tamper:
            tamper_xml(R)
    xml = etree.tostring(R, encoding="UTF-8", xml_declaration=True)
    if a.doctype:
        decl_end = xml.index(b"?>") + 2
        xml = xml[:decl_end] + b'\n<!DOCTYPE samlp:LogoutRequest [<!ENTITY x "x">]>' + xml[decl_end:]
    return base64.b64encode(xml).decode()


def cmd_message(a, param, build):
    R = build(a)
    if a.binding == "redirect":
        print(redirect_query(a, param, R))
    else:
        print(post_value(a, R))


def cmd_resign_response(a):
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    with open(a.input, "rb") as f:
        R = etree.fromstring(f.read(), parser)
    if R.find(".//" + q(NS_DS, "Signature")) is not None:
        die("input already carries a signature; make it with --sign none")
    if a.session_not_on_or_after is not None:
        t = ts(now() + dt.timedelta(seconds=a.session_not_on_or_after))
        stmts = R.findall(".//" + q(NS_SAML, "AuthnStatement"))
        if not stmts:
            die("no AuthnStatement")
        for s in stmts:
            s.set("SessionNotOnOrAfter", t)
    key, cert = load_key(a.key), load_cert(a.cert)
    for A in R.findall(q(NS_SAML, "Assertion")):
        idx = R.index(A)
        R.remove(A)
        R.insert(idx, xml_sign(A, key, cert))
    if a.sign_response:
        R = xml_sign(R, key, cert)
    print(base64.b64encode(etree.tostring(R, encoding="UTF-8", xml_declaration=True)).decode())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    v = sub.add_parser("verify-redirect", help="verify a Redirect-binding query; JSON out")
    v.add_argument("--cert", action="append", required=True)
    v.add_argument("--query", required=True, help="the raw query (after '?')")
    v.set_defaults(func=cmd_verify_redirect)

    def common(sp):
        sp.add_argument("--issuer", required=True)
        sp.add_argument("--destination", required=True, help="URL, or none to omit")
        sp.add_argument("--id", default=None)
        sp.add_argument("--issue-instant-offset", type=int, default=0)
        sp.add_argument("--binding", choices=["redirect", "post"], required=True)
        sp.add_argument("--key")
        sp.add_argument("--cert")
        sp.add_argument("--wrong-key", action="store_true")
        sp.add_argument("--unsigned", action="store_true")
        sp.add_argument("--tamper", action="store_true")
        sp.add_argument("--tamper-relay", action="store_true")
        sp.add_argument("--relay-state", default=None)
        sp.add_argument("--sig-alg", choices=list(SIG_ALG_URIS), default="rsa-sha256")
        sp.add_argument("--bomb", type=int, default=0)
        sp.add_argument("--doctype", action="store_true")

    lr = sub.add_parser("logout-request", help="an IdP LogoutRequest")
    common(lr)
    lr.add_argument("--nameid", required=True)
    lr.add_argument("--nameid-format", default=NAMEID_PERSISTENT, help="URI, or none to omit")
    lr.add_argument("--session-index", action="append")
    lr.add_argument("--not-on-or-after", type=int, default=300,
                    help="NotOnOrAfter = now + S (default 300)")
    lr.set_defaults(func=lambda a: cmd_message(a, "SAMLRequest", build_logout_request))

    ls = sub.add_parser("logout-response", help="an IdP LogoutResponse")
    common(ls)
    ls.add_argument("--in-response-to", required=True)
    ls.add_argument("--status", default="Success")
    ls.set_defaults(func=lambda a: cmd_message(a, "SAMLResponse", build_logout_response))

    rs = sub.add_parser("resign-response", help="change SessionNotOnOrAfter and sign a Response")
    rs.add_argument("--in", dest="input", required=True)
    rs.add_argument("--key", required=True)
    rs.add_argument("--cert", required=True)
    rs.add_argument("--session-not-on-or-after", type=int, default=None)
    rs.add_argument("--no-sign-response", dest="sign_response", action="store_false")
    rs.set_defaults(func=cmd_resign_response)

    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
