#!/usr/bin/env python3
"""Batch response maker for samlgate's certificate-rotation tests (tests/rotation.rs).

One python process makes every SAMLResponse a test needs, so a few hundred cost seconds, not
minutes. It drives the two independent helpers in this directory in-process, unchanged:

  - saml_idp.py   builds and signs the Response (signxml), exactly as `saml_idp.py response`;
  - saml_encrypt.py  replaces the Assertion by an EncryptedAssertion, exactly as
                  `saml_encrypt.py encrypt`;

and adds what neither does: signing the Response *after* encryption (the signature then covers
the EncryptedAssertion, as IdPs that "sign the response, encrypt the assertion" do), and swapping
the EncryptedAssertion of one finished document into another (substitution attack).

Usage:
  rotation_tool.py gen JOBS.json      prints one base64 SAMLResponse per job, in order

JOBS.json is a list of objects:
  {"response": [saml_idp.py response args, without --xml],
   "encrypt":  [saml_encrypt.py encrypt args without --in/--out] | null,
   "sign_response_after": {"key": KEY.pem, "cert": CERT.pem} | null,
   "substitute_encrypted_from": INDEX | null}   (an earlier job of this list)
"""
import base64
import io
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import saml_encrypt  # noqa: E402
import saml_idp  # noqa: E402
from lxml import etree  # noqa: E402

NS_SAML = saml_idp.NS_SAML
NS_DS = saml_idp.NS_DS


def _cache_private_key_loading():
    """cryptography checks an RSA private key on every load (~50 ms); saml_idp.py loads the
    signing key for each response. The key files do not change during a batch, so loading each
    PEM once is the same result at a fraction of the cost."""
    from cryptography.hazmat.primitives import serialization

    orig = serialization.load_pem_private_key
    cache = {}

    def load(data, password=None, *args, **kwargs):
        k = (bytes(data), password)
        if k not in cache:
            cache[k] = orig(data, password, *args, **kwargs)
        return cache[k]

    serialization.load_pem_private_key = load


_cache_private_key_loading()


def die(msg):
    print("rotation_tool.py: " + msg, file=sys.stderr)
    sys.exit(2)


def idp_response(args):
    """`saml_idp.py response ARGS --xml`, in this process; returns the XML bytes."""
    old_argv, old_stdout = sys.argv, sys.stdout
    buf = io.BytesIO()
    wrapper = io.TextIOWrapper(buf, encoding="utf-8")
    sys.argv = ["saml_idp.py", "response"] + list(args) + ["--xml"]
    sys.stdout = wrapper
    try:
        saml_idp.main()
        wrapper.flush()
        return buf.getvalue()
    finally:
        sys.stdout = old_stdout
        sys.argv = old_argv
        wrapper.detach()


def encrypt(xml, args, tmp):
    """`saml_encrypt.py encrypt --in X --out Y ARGS`, in this process."""
    tin, tout = os.path.join(tmp, "in.xml"), os.path.join(tmp, "out.xml")
    with open(tin, "wb") as f:
        f.write(xml)
    a = saml_encrypt.parser().parse_args(["encrypt", "--in", tin, "--out", tout] + list(args))
    saml_encrypt.cmd_encrypt(a)
    with open(tout, "rb") as f:
        return f.read()


def sign_response(xml, key_path, cert_path):
    """Enveloped RSA-SHA256 signature over the whole Response (exclusive c14n), placed after
    its Issuer as SAML requires; signed as the document is now (EncryptedAssertion inside)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # cached

    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    if root.find(saml_idp.q(NS_DS, "Signature")) is not None:
        die("sign_response_after: the Response is already signed")
    issuer = root.find(saml_idp.q(NS_SAML, "Issuer"))
    if issuer is None:
        die("sign_response_after: no saml:Issuer child of the Response")
    ph = etree.Element(saml_idp.q(NS_DS, "Signature"), nsmap={"ds": NS_DS})
    ph.set("Id", "placeholder")
    issuer.addnext(ph)
    with open(key_path, "rb") as f:
        key = load_pem_private_key(f.read(), password=None)
    with open(cert_path, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())
    signer = saml_idp.XMLSigner(
        signature_algorithm=saml_idp.SignatureMethod.RSA_SHA256,
        digest_algorithm=saml_idp.DigestAlgorithm.SHA256,
        c14n_algorithm=saml_idp.CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=key, cert=certs, reference_uri=root.get("ID"), id_attribute="ID")
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def encrypted_range(text):
    """Byte range of the one saml:EncryptedAssertion element in `text` (prefix from the doc)."""
    import re

    m = re.search(r"<([A-Za-z_][\w.-]*:)?EncryptedAssertion[\s>]", text)
    if not m:
        die("substitute: no EncryptedAssertion")
    prefix = m.group(1) or ""
    end_tag = "</%sEncryptedAssertion>" % prefix
    j = text.index(end_tag, m.start()) + len(end_tag)
    return m.start(), j


def substitute(target, donor):
    t = target.decode("utf-8")
    d = donor.decode("utf-8")
    ts, te = encrypted_range(t)
    ds, de = encrypted_range(d)
    return (t[:ts] + d[ds:de] + t[te:]).encode("utf-8")


def cmd_gen(path):
    with open(path, encoding="utf-8") as f:
        jobs = json.load(f)
    done = []
    with tempfile.TemporaryDirectory(prefix="rotation-tool-") as tmp:
        for n, job in enumerate(jobs):
            try:
                xml = idp_response(job["response"])
                if job.get("encrypt") is not None:
                    xml = encrypt(xml, job["encrypt"], tmp)
                s = job.get("sign_response_after")
                if s:
                    xml = sign_response(xml, s["key"], s["cert"])
                src = job.get("substitute_encrypted_from")
                if src is not None:
                    if not 0 <= src < n:
                        die("job %d: substitute_encrypted_from %r is not an earlier job" % (n, src))
                    xml = substitute(xml, done[src])
            except SystemExit as x:
                die("job %d failed (%s): %s" % (n, x.code, json.dumps(job)))
            done.append(xml)
    out = sys.stdout
    for xml in done:
        out.write(base64.b64encode(xml).decode() + "\n")
    out.flush()


def main(argv):
    if len(argv) != 2 or argv[0] != "gen":
        die("usage: rotation_tool.py gen JOBS.json")
    cmd_gen(argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
