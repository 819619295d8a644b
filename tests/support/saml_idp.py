#!/usr/bin/env python3
"""Independent test IdP for samlgate's integration tests.

Signs SAML 2.0 Responses with signxml (lxml + cryptography), an XML-DSig implementation that
shares no code with the gateway; `--signer xmlsec1` signs with the xmlsec1 CLI instead (a
second independent implementation). Modelled on ../shared/peers/gen_responses.py (beside the repository).

Sub-commands:

  keygen   --out DIR --cn NAME
           DIR/idp.key (PKCS#8 PEM, RSA-2048) and DIR/idp.crt (self-signed, 10 years)
  metadata --cert CRT [--cert CRT2 ...] --entity-id ID --out FILE
           IdP metadata, one <KeyDescriptor use="signing"> per certificate
  response --sp-entity ID --acs URL --key KEY --cert CRT [options]
           prints the base64 SAMLResponse (one line, no wrapping) or, with --xml, the XML

Every attack (`--attack NAME`) starts from a genuinely signed response, so a verifier that
checks "some signature in the document is valid" but reads another element would accept it.

Run with the venv made by scripts/install-deps.sh:
  .venv/bin/python tests/support/saml_idp.py response --sp-entity ... --acs ... \
      --key k/idp.key --cert k/idp.crt --sign assertion --nameid GM0012345
"""
import argparse
import base64
import copy
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from lxml import etree
from signxml import XMLSigner, XMLVerifier
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_XS = "http://www.w3.org/2001/XMLSchema"
NS_XENC = "http://www.w3.org/2001/04/xmlenc#"

NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
CM_HOK = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
DEFAULT_IDP = "https://gmis-idp.test/idp"
SSO_URL = "https://gmis-idp.test/idp/sso"
SLO_URL = "https://gmis-idp.test/idp/slo"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

SIG_ALGS = {
    "rsa-sha256": SignatureMethod.RSA_SHA256,
    "rsa-sha1": SignatureMethod.RSA_SHA1,
    "rsa-sha512": SignatureMethod.RSA_SHA512,
}
DIGEST_ALGS = {
    "sha256": DigestAlgorithm.SHA256,
    "sha1": DigestAlgorithm.SHA1,
    "sha512": DigestAlgorithm.SHA512,
}
XMLSEC_SIG = {
    "rsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "rsa-sha1": "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "rsa-sha512": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
}
XMLSEC_DIGEST = {
    "sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
    "sha1": "http://www.w3.org/2000/09/xmldsig#sha1",
    "sha512": "http://www.w3.org/2001/04/xmlenc#sha512",
}
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

# attack name -> what carries a signature when --sign is not given
ATTACKS = {
    "xsw-evil-first": "assertion",
    "xsw-evil-after": "assertion",
    "xsw-wrap-in-extensions": "response",
    "xsw-assertion-in-object": "assertion",
    "xsw-evil-in-subject": "assertion",
    "xsw-evil-in-extensions": "assertion",
    "evil-foreign-ns": "assertion",
    "evil-nameid-in-extensions": "assertion",
    "evil-attrs-after-assertion": "assertion",
    "two-signed-assertions": "assertion",
    "two-assertions": "assertion",
    "extra-encrypted-assertion": "both",
    "key-substitution": "both",
    "doctype": "both",
    "xxe": "both",
    "billion-laughs": "both",
    "tamper-nameid": "both",
}
# attacks whose signing mode is part of their definition (--sign is refused)
FIXED_SIGN = {"xsw-evil-first", "xsw-evil-after", "xsw-wrap-in-extensions",
              "xsw-assertion-in-object", "xsw-evil-in-subject", "xsw-evil-in-extensions",
              "evil-foreign-ns", "evil-nameid-in-extensions", "evil-attrs-after-assertion"}


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id():
    # xsd:ID must not start with a digit
    return "_" + uuid.uuid4().hex


def die(msg):
    print("saml_idp.py: " + msg, file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------- keys / metadata

def cmd_keygen(a):
    from cryptography.hazmat.primitives import serialization

    key, cert = make_keypair(a.cn, a.days)
    os.makedirs(a.out, exist_ok=True)
    kp = os.path.join(a.out, "idp.key")
    with open(kp, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(kp, 0o600)
    with open(os.path.join(a.out, "idp.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def make_keypair(cn, days=3652):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    # days <= 0: a certificate that has already expired (valid for a day, ending -days ago).
    start = now if days > 0 else now + dt.timedelta(days=days - 1)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def pem_body(path):
    with open(path) as f:
        lines = f.read().strip().splitlines()
    if not lines or "BEGIN CERTIFICATE" not in lines[0]:
        die("%s: not a PEM certificate" % path)
    out = []
    for l in lines[1:]:
        if l.startswith("-----END"):
            break
        out.append(l.strip())
    return "".join(out)


def cmd_metadata(a):
    ed = etree.Element(q(NS_MD, "EntityDescriptor"), nsmap={"md": NS_MD, "ds": NS_DS})
    ed.set("entityID", a.entity_id)
    idp = etree.SubElement(ed, q(NS_MD, "IDPSSODescriptor"))
    idp.set("WantAuthnRequestsSigned", "false")
    idp.set("protocolSupportEnumeration", NS_SAMLP)
    for c in a.cert:
        kd = etree.SubElement(idp, q(NS_MD, "KeyDescriptor"))
        kd.set("use", "signing")
        ki = etree.SubElement(kd, q(NS_DS, "KeyInfo"))
        xd = etree.SubElement(ki, q(NS_DS, "X509Data"))
        etree.SubElement(xd, q(NS_DS, "X509Certificate")).text = pem_body(c)
    for b in (BINDING_REDIRECT, BINDING_POST):
        s = etree.SubElement(idp, q(NS_MD, "SingleLogoutService"))
        s.set("Binding", b)
        s.set("Location", SLO_URL)
    etree.SubElement(idp, q(NS_MD, "NameIDFormat")).text = NAMEID_PERSISTENT
    for b in (BINDING_REDIRECT, BINDING_POST):
        s = etree.SubElement(idp, q(NS_MD, "SingleSignOnService"))
        s.set("Binding", b)
        s.set("Location", SSO_URL)
    xml = etree.tostring(ed, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    if a.out == "-":
        sys.stdout.buffer.write(xml)
    else:
        with open(a.out, "wb") as f:
            f.write(xml)


# --------------------------------------------------------------------------- building

class Sha1Signer(XMLSigner):
    """signxml refuses SHA-1 for signing by default; the negative tests need it."""

    def check_deprecated_methods(self):
        pass


def split_point(value):
    """Where --comment-in-nameid / --cdata-in-nameid split a value: before the last '.'
    (GM0012345.evil -> GM0012345 | .evil, the truncation a naive parser would produce),
    otherwise in the middle."""
    i = value.rfind(".")
    if i <= 0:
        i = len(value) // 2
    return value[:i], value[i:]


def set_split_text(el, value, mode):
    if mode == "comment" and len(value) > 1:
        head, tail = split_point(value)
        el.text = head
        c = etree.Comment("")
        c.tail = tail
        el.append(c)
    else:
        el.text = value


class Builder:
    def __init__(self, a):
        self.a = a
        self.now = (dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
                    + dt.timedelta(seconds=a.time_offset))
        self.issue_instant = self.now + dt.timedelta(seconds=a.issue_instant_offset)
        self._key = self._cert = None

    # keys
    def keys(self):
        if self._key is None:
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
            if self.a.attack == "key-substitution":
                self._key, self._cert = make_keypair("attacker.example")
                self._cert = [self._cert]
            else:
                with open(self.a.key, "rb") as f:
                    self._key = load_pem_private_key(f.read(), password=None)
                with open(self.a.cert, "rb") as f:
                    self._cert = x509.load_pem_x509_certificates(f.read())
        return self._key, self._cert

    def attrs(self, nameid):
        a = self.a
        out = {
            "gmisAccountId": [nameid],
            "accountCategory": ["病院"],
            "facilityCode": ["1310000001"],
            "facilityName": ["テスト病院"],
            "displayName": ["山田 太郎"],
            "mail": ["yamada@example.jp"],
        }
        extra = {}
        for kv in a.attr or []:
            if "=" not in kv:
                die("--attr wants NAME=VALUE, got %r" % kv)
            k, _, v = kv.partition("=")
            extra.setdefault(k, []).append(v)
        out.update(extra)
        for k in a.drop_attr or []:
            out.pop(k, None)
        return list(out.items())

    def assertion(self, nameid, aid=None, signed=False):
        a = self.a
        aid = aid or new_id()
        split = "comment" if a.comment_in_nameid else None
        # ADFS writes <Assertion xmlns="...assertion"> (default namespace, no prefix).
        A = etree.Element(q(NS_SAML, "Assertion"),
                          nsmap={None: NS_SAML} if a.default_ns_assertion else {"saml": NS_SAML})
        A.set("ID", aid)
        A.set("Version", "2.0")
        A.set("IssueInstant", ts(self.issue_instant))
        etree.SubElement(A, q(NS_SAML, "Issuer")).text = a.assertion_issuer or a.issuer
        if signed:
            etree.SubElement(A, q(NS_DS, "Signature"), nsmap={"ds": NS_DS}).set("Id", "placeholder")
        not_before = self.now + dt.timedelta(seconds=a.not_before_offset)
        not_after = self.now + dt.timedelta(seconds=a.validity)

        subj = etree.SubElement(A, q(NS_SAML, "Subject"))
        nid = etree.SubElement(subj, q(NS_SAML, "NameID"))
        nid.set("Format", a.nameid_format)
        nid.set("NameQualifier", a.issuer)
        nid.set("SPNameQualifier", a.sp_entity)
        set_split_text(nid, nameid, split)
        if not a.no_subject_confirmation:
            sc = etree.SubElement(subj, q(NS_SAML, "SubjectConfirmation"))
            sc.set("Method", CM_HOK if a.no_bearer else CM_BEARER)
            scd = etree.SubElement(sc, q(NS_SAML, "SubjectConfirmationData"))
            scd_after = not_after if a.scd_validity is None else self.now + dt.timedelta(seconds=a.scd_validity)
            scd.set("NotOnOrAfter", ts(scd_after))
            if a.recipient != "none":
                scd.set("Recipient", a.recipient or a.acs)
            if a.in_response_to:
                scd.set("InResponseTo", a.in_response_to)

        cond = etree.SubElement(A, q(NS_SAML, "Conditions"))
        cond.set("NotBefore", ts(not_before))
        cond.set("NotOnOrAfter", ts(not_after))
        if not a.no_audience:
            ar = etree.SubElement(cond, q(NS_SAML, "AudienceRestriction"))
            etree.SubElement(ar, q(NS_SAML, "Audience")).text = a.audience or a.sp_entity
        for extra in a.extra_audience_restriction or []:
            ar = etree.SubElement(cond, q(NS_SAML, "AudienceRestriction"))
            etree.SubElement(ar, q(NS_SAML, "Audience")).text = extra

        if not a.no_authn_statement:
            authn = etree.SubElement(A, q(NS_SAML, "AuthnStatement"))
            authn.set("AuthnInstant", ts(self.now))
            authn.set("SessionIndex", new_id())
            authn.set("SessionNotOnOrAfter", ts(self.now + dt.timedelta(hours=8)))
            actx = etree.SubElement(authn, q(NS_SAML, "AuthnContext"))
            etree.SubElement(actx, q(NS_SAML, "AuthnContextClassRef")).text = \
                "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"

        attrs = self.attrs(nameid)
        if attrs:
            st = etree.SubElement(A, q(NS_SAML, "AttributeStatement"))
            for name, values in attrs:
                at = etree.SubElement(st, q(NS_SAML, "Attribute"))
                at.set("Name", name)
                at.set("NameFormat", a.attr_name_format)
                for v in values:
                    if a.attr_xsi_type == "none":
                        av = etree.SubElement(at, q(NS_SAML, "AttributeValue"))
                    else:
                        av = etree.SubElement(at, q(NS_SAML, "AttributeValue"),
                                              nsmap={"xs": NS_XS, "xsi": NS_XSI})
                        av.set(q(NS_XSI, "type"), a.attr_xsi_type)
                    set_split_text(av, v, split if (name == "gmisAccountId" and v == nameid) else None)
        if signed:
            A = self.sign(A, aid)
        return A

    def response(self, assertions, signed=False, rid=None):
        a = self.a
        rid = rid or new_id()
        nsmap = {"samlp": NS_SAMLP, "saml": NS_SAML}
        if a.default_ns_assertion:
            # No saml prefix in scope: lxml would re-prefix the moved Assertion with it.
            del nsmap["saml"]
        if a.inclusive_ns:
            # Salesforce declares xs/xsi on the Response and lists them in PrefixList.
            nsmap.update({"xs": NS_XS, "xsi": NS_XSI})
        R = etree.Element(q(NS_SAMLP, "Response"), nsmap=nsmap)
        R.set("ID", rid)
        R.set("Version", "2.0")
        R.set("IssueInstant", ts(self.issue_instant))
        if a.destination != "none":
            R.set("Destination", a.destination or a.acs)
        if a.envelope_in_response_to or a.in_response_to:
            R.set("InResponseTo", a.envelope_in_response_to or a.in_response_to)
        etree.SubElement(R, q(NS_SAML, "Issuer"),
                         nsmap={None: NS_SAML} if a.default_ns_assertion else None).text = a.issuer
        if signed:
            etree.SubElement(R, q(NS_DS, "Signature"), nsmap={"ds": NS_DS}).set("Id", "placeholder")
        status = etree.SubElement(R, q(NS_SAMLP, "Status"))
        etree.SubElement(status, q(NS_SAMLP, "StatusCode")).set(
            "Value", "urn:oasis:names:tc:SAML:2.0:status:" + a.status)
        for A in assertions:
            R.append(A)
        if signed:
            R = self.sign(R, rid)
        return R

    def sign(self, el, elem_id):
        if self.a.signer == "xmlsec1":
            return xmlsec1_sign(self.a, el, elem_id, self.keys())
        key, cert = self.keys()
        signer = Sha1Signer(
            signature_algorithm=SIG_ALGS[self.a.sig_alg],
            digest_algorithm=DIGEST_ALGS[self.a.digest_alg],
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        if self.a.inclusive_ns:
            die("--inclusive-ns needs --signer xmlsec1 (signxml puts the PrefixList on SignedInfo, "
                "Salesforce puts it on the Reference transform)")
        return signer.sign(el, key=key, cert=cert, reference_uri=elem_id, id_attribute="ID")


def xmlsec1_sign(a, el, elem_id, _keys):
    """Replace the placeholder with a signature template and let the xmlsec1 CLI sign it."""
    if not shutil.which("xmlsec1"):
        die("xmlsec1 CLI not found (Debian package xmlsec1; run scripts/install-deps.sh)")
    ph = el.find(q(NS_DS, "Signature"))
    if ph is None or ph.get("Id") != "placeholder":
        die("internal: no signature placeholder")
    sig = etree.Element(q(NS_DS, "Signature"), nsmap={"ds": NS_DS})
    si = etree.SubElement(sig, q(NS_DS, "SignedInfo"))
    etree.SubElement(si, q(NS_DS, "CanonicalizationMethod")).set("Algorithm", EXC_C14N)
    etree.SubElement(si, q(NS_DS, "SignatureMethod")).set("Algorithm", XMLSEC_SIG[a.sig_alg])
    ref = etree.SubElement(si, q(NS_DS, "Reference"))
    ref.set("URI", "#" + elem_id)
    tr = etree.SubElement(ref, q(NS_DS, "Transforms"))
    etree.SubElement(tr, q(NS_DS, "Transform")).set("Algorithm", ENVELOPED)
    exc = etree.SubElement(tr, q(NS_DS, "Transform"))
    exc.set("Algorithm", EXC_C14N)
    if a.inclusive_ns:
        # Salesforce: <ec:InclusiveNamespaces PrefixList="ds saml samlp xs xsi"/> on the transform.
        etree.SubElement(exc, q(EXC_C14N, "InclusiveNamespaces"),
                         nsmap={"ec": EXC_C14N}).set("PrefixList", a.inclusive_ns)
    etree.SubElement(ref, q(NS_DS, "DigestMethod")).set("Algorithm", XMLSEC_DIGEST[a.digest_alg])
    etree.SubElement(ref, q(NS_DS, "DigestValue"))
    etree.SubElement(sig, q(NS_DS, "SignatureValue"))
    ki = etree.SubElement(sig, q(NS_DS, "KeyInfo"))
    etree.SubElement(ki, q(NS_DS, "X509Data"))
    ph.addprevious(sig)
    el.remove(ph)
    local = etree.QName(el).localname
    ns = etree.QName(el).namespace
    with tempfile.TemporaryDirectory() as d:
        tin, tout = os.path.join(d, "in.xml"), os.path.join(d, "out.xml")
        with open(tin, "wb") as f:
            f.write(etree.tostring(el, xml_declaration=True, encoding="UTF-8"))
        cmd = ["xmlsec1", "--sign", "--privkey-pem", "%s,%s" % (a.key, a.cert),
               "--id-attr:ID", "%s:%s" % (ns, local),
               "--node-xpath", "/*/*[local-name()='Signature']",
               "--output", tout, tin]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            die("xmlsec1 --sign failed: " + p.stderr.strip()[-800:])
        with open(tout, "rb") as f:
            return etree.fromstring(f.read(), etree.XMLParser(resolve_entities=False))


def strip_sig(el):
    s = el.find(q(NS_DS, "Signature"))
    if s is not None:
        el.remove(s)
    return el


def make_evil(a, assertion, keep_sig=False):
    """Copy of a signed assertion: new ID, the attacker's NameID and account id, unsigned."""
    evil = copy.deepcopy(assertion)
    if not keep_sig:
        strip_sig(evil)
    evil.set("ID", new_id())
    evil.find(".//" + q(NS_SAML, "NameID")).text = a.evil_nameid
    for at in evil.iter(q(NS_SAML, "Attribute")):
        if at.get("Name") == "gmisAccountId":
            for v in at:
                v.text = a.evil_nameid
    return evil


def evil_attribute_statement(a):
    st = etree.Element(q(NS_SAML, "AttributeStatement"))
    for name, v in (("gmisAccountId", a.evil_nameid), ("accountCategory", "都道府県"),
                    ("facilityCode", "9999999999")):
        at = etree.SubElement(st, q(NS_SAML, "Attribute"))
        at.set("Name", name)
        at.set("NameFormat", ATTRNAME_BASIC)
        etree.SubElement(at, q(NS_SAML, "AttributeValue")).text = v
    return st


def doc_bytes(R):
    return etree.tostring(R, xml_declaration=True, encoding="UTF-8")


def insert_doctype(xml, doctype):
    decl_end = xml.index(b"?>") + 2 if xml.startswith(b"<?xml") else 0
    return xml[:decl_end] + b"\n" + doctype + xml[decl_end:]


ENTITY_MARK = "ENTITYMARKX"


def build(a):
    b = Builder(a)
    sign = a.sign
    if sign is None:
        sign = ATTACKS.get(a.attack, "both")
    elif a.attack in FIXED_SIGN:
        die("--sign cannot be combined with --attack %s (its signing is part of the attack)" % a.attack)
    s_assert = sign in ("assertion", "both")
    s_resp = sign in ("response", "both")
    nameid = a.nameid
    att = a.attack
    if att in ("xxe", "billion-laughs"):
        nameid = ENTITY_MARK

    if a.no_assertion:
        R = b.response([], signed=s_resp)
        return doc_bytes(R)

    if att is None or att in ("key-substitution", "doctype", "xxe", "billion-laughs", "tamper-nameid"):
        R = b.response([b.assertion(nameid, signed=s_assert)], signed=s_resp)
        if att == "tamper-nameid":
            R.find(".//" + q(NS_SAML, "NameID")).text = a.evil_nameid
            for at in R.iter(q(NS_SAML, "Attribute")):
                if at.get("Name") == "gmisAccountId":
                    for v in at:
                        v.text = a.evil_nameid
        xml = doc_bytes(R)
        if att == "doctype":
            xml = insert_doctype(xml, b"<!DOCTYPE samlp:Response [\n"
                                      b"  <!ELEMENT samlp:Response ANY>\n"
                                      b"  <!ATTLIST saml:Assertion ID ID #IMPLIED>\n]>")
        elif att == "xxe":
            xml = insert_doctype(xml, b'<!DOCTYPE samlp:Response [\n'
                                      b'  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>')
            xml = xml.replace(ENTITY_MARK.encode(), b"&xxe;")
        elif att == "billion-laughs":
            lines = [b'<!DOCTYPE samlp:Response [', b'  <!ENTITY lol "lol">']
            prev = b"lol"
            for i in range(1, 10):
                lines.append(b'  <!ENTITY lol%d "%s">' % (i, (b"&" + prev + b";") * 10))
                prev = b"lol%d" % i
            lines.append(b"]>")
            xml = insert_doctype(xml, b"\n".join(lines))
            xml = xml.replace(ENTITY_MARK.encode(), b"&lol9;")
        return xml

    if att in ("xsw-evil-first", "xsw-evil-after"):
        A = b.assertion(nameid, signed=True)
        evil = make_evil(a, A)
        seq = [evil, A] if att == "xsw-evil-first" else [A, evil]
        return doc_bytes(b.response(seq, signed=False))

    if att == "xsw-wrap-in-extensions":
        orig = b.response([b.assertion(nameid, signed=False)], signed=True)
        evil = copy.deepcopy(orig)
        evil.set("ID", new_id())
        sig = evil.find(q(NS_DS, "Signature"))
        for A in evil.findall(q(NS_SAML, "Assertion")):
            evil.replace(A, make_evil(a, A))
        strip_sig(orig)
        ext = etree.Element(q(NS_SAMLP, "Extensions"))
        ext.append(orig)
        sig.addnext(ext)
        return doc_bytes(evil)

    if att == "xsw-assertion-in-object":
        A = b.assertion(nameid, signed=True)
        evil = make_evil(a, A, keep_sig=True)
        obj = etree.SubElement(evil.find(q(NS_DS, "Signature")), q(NS_DS, "Object"))
        obj.append(strip_sig(copy.deepcopy(A)))
        return doc_bytes(b.response([evil], signed=False))

    if att == "xsw-evil-in-extensions":
        # XSW7-like: the signed Assertion stays where it belongs, an unsigned evil one sits in
        # samlp:Extensions before it (first in document order)
        A = b.assertion(nameid, signed=True)
        evil = make_evil(a, A)
        R = b.response([A], signed=False)
        ext = etree.Element(q(NS_SAMLP, "Extensions"))
        ext.append(evil)
        R.find(q(NS_SAML, "Issuer")).addnext(ext)
        return doc_bytes(R)

    if att == "evil-foreign-ns":
        # an unsigned look-alike of the Assertion in another namespace (same local names,
        # same prefix "saml") before the signed one: not a SAML Assertion at all, but a reader
        # that matches local names only would take its NameID/attributes
        A = b.assertion(nameid, signed=True)
        evil = make_evil(a, A)
        for el in evil.iter():
            if isinstance(el.tag, str) and el.tag.startswith("{%s}" % NS_SAML):
                el.tag = "{urn:example:evil:assertion}" + etree.QName(el).localname
        raw = etree.tostring(evil)
        assert b"ns0:" in raw
        raw = raw.replace(b' xmlns:saml="%s"' % NS_SAML.encode(), b"")
        evil = etree.fromstring(raw.replace(b"xmlns:ns0=", b"xmlns:saml=").replace(b"ns0:", b"saml:"))
        return doc_bytes(b.response([evil, A], signed=False))

    if att == "evil-nameid-in-extensions":
        # a bare NameID and AttributeStatement (no Assertion) in the unsigned samlp:Extensions
        A = b.assertion(nameid, signed=True)
        R = b.response([A], signed=False)
        ext = etree.Element(q(NS_SAMLP, "Extensions"))
        nid = etree.SubElement(ext, q(NS_SAML, "NameID"))
        nid.set("Format", NAMEID_PERSISTENT)
        nid.text = a.evil_nameid
        ext.append(evil_attribute_statement(a))
        R.find(q(NS_SAML, "Issuer")).addnext(ext)
        return doc_bytes(R)

    if att == "evil-attrs-after-assertion":
        # an unsigned AttributeStatement as a sibling after the signed Assertion
        A = b.assertion(nameid, signed=True)
        R = b.response([A], signed=False)
        R.append(evil_attribute_statement(a))
        return doc_bytes(R)

    if att == "xsw-evil-in-subject":
        A = b.assertion(nameid, signed=True)
        evil = make_evil(a, A)
        evil.find(q(NS_SAML, "Subject")).append(A)
        return doc_bytes(b.response([evil], signed=False))

    if att == "two-signed-assertions":
        A1 = b.assertion(nameid, signed=True)
        A2 = b.assertion(a.evil_nameid, signed=True)
        return doc_bytes(b.response([A1, A2], signed=s_resp))

    if att == "two-assertions":
        A1 = b.assertion(nameid, signed=s_assert)
        A2 = strip_sig(copy.deepcopy(A1))
        A2.set("ID", new_id())
        return doc_bytes(b.response([A1, A2], signed=s_resp))

    if att == "extra-encrypted-assertion":
        A = b.assertion(nameid, signed=s_assert)
        ea = etree.Element(q(NS_SAML, "EncryptedAssertion"))
        ed = etree.SubElement(ea, q(NS_XENC, "EncryptedData"), nsmap={"xenc": NS_XENC})
        ed.set("Type", "http://www.w3.org/2001/04/xmlenc#Element")
        cd = etree.SubElement(ed, q(NS_XENC, "CipherData"))
        etree.SubElement(cd, q(NS_XENC, "CipherValue")).text = base64.b64encode(os.urandom(48)).decode()
        return doc_bytes(b.response([A, ea], signed=s_resp))

    die("unknown attack %r" % att)


def apply_charref(a, xml):
    """HEAD.TAIL -> HEAD&#46;TAIL (first character of TAIL as a numeric character reference);
    the same signed string for C14N."""
    head, tail = split_point(a.nameid)
    old = (">" + a.nameid + "<").encode()
    new = (">" + head + "&#%d;" % ord(tail[0]) + tail[1:] + "<").encode()
    if xml.count(old) == 0:
        die("--charref-in-nameid: value not found in document")
    return xml.replace(old, new)


def apply_cdata(a, xml):
    head, tail = split_point(a.nameid)
    old = (">" + a.nameid + "<").encode()
    new = (">" + head + "<![CDATA[" + tail + "]]><").encode()
    n = xml.count(old)
    if n == 0:
        die("--cdata-in-nameid: value not found in document")
    return xml.replace(old, new)


def self_check(xml, cert_path):
    """Verify every signature with signxml and the xmlsec1 CLI; report to stderr."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as e:
        print("self-check: not parsed: %s" % e, file=sys.stderr)
        return
    sigs = root.findall(".//" + q(NS_DS, "Signature"))
    msgs = ["signatures: %d" % len(sigs)]
    with open(cert_path, "rb") as f:
        cert = f.read()
    for i, sig in enumerate(sigs):
        parent = sig.getparent()
        try:
            doc = copy.deepcopy(parent)
            XMLVerifier().verify(doc, x509_cert=cert, id_attribute="ID", expect_references=1,
                                 ignore_ambiguous_key_info=True)
            msgs.append("signxml[%d] %s: ok" % (i, etree.QName(parent).localname))
        except Exception as e:  # noqa: BLE001 - diagnostics only
            msgs.append("signxml[%d] %s: FAIL %s" % (i, etree.QName(parent).localname, e))
    if shutil.which("xmlsec1") and sigs:
        with tempfile.NamedTemporaryFile(suffix=".xml") as t:
            t.write(xml)
            t.flush()
            for i, sig in enumerate(sigs):
                cmd = ["xmlsec1", "--verify", "--pubkey-cert-pem", cert_path, "--enabled-key-data", "x509",
                       "--id-attr:ID", NS_SAMLP + ":Response", "--id-attr:ID", NS_SAML + ":Assertion",
                       "--node-xpath", "(//*[local-name()='Signature' and namespace-uri()='%s'])[%d]"
                       % (NS_DS, i + 1), t.name]
                p = subprocess.run(cmd, capture_output=True, text=True)
                msgs.append("xmlsec1[%d]: %s" % (i, "ok" if p.returncode == 0 else
                                                 "FAIL " + (p.stderr.strip().splitlines() or [""])[-1][-200:]))
    print("; ".join(msgs), file=sys.stderr)


def cmd_response(a):
    if a.attack == "key-substitution" and a.signer == "xmlsec1":
        die("key-substitution uses signxml")
    if a.comment_in_nameid + a.cdata_in_nameid + a.charref_in_nameid > 1:
        die("--comment-in-nameid, --cdata-in-nameid and --charref-in-nameid are exclusive")
    if a.digest_alg is None:
        a.digest_alg = "sha1" if a.sig_alg == "rsa-sha1" else "sha256"
    xml = build(a)
    if a.cdata_in_nameid:
        xml = apply_cdata(a, xml)
    if a.charref_in_nameid:
        xml = apply_charref(a, xml)
    if a.self_check:
        self_check(xml, a.cert)
    if a.xml:
        sys.stdout.buffer.write(xml)
    else:
        sys.stdout.write(base64.b64encode(xml).decode() + "\n")


def build_parser():
    """The command-line parser (also used by saml_attacks.py for the `response` options)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    k = sub.add_parser("keygen", help="RSA-2048 key + self-signed certificate")
    k.add_argument("--out", required=True, help="directory for idp.key, idp.crt")
    k.add_argument("--cn", default="gmis-idp.test")
    k.add_argument("--days", type=int, default=3652,
                   help="certificate lifetime from now; <= 0: expired that many days ago")
    k.set_defaults(func=cmd_keygen)

    m = sub.add_parser("metadata", help="IdP metadata XML")
    m.add_argument("--cert", action="append", required=True, help="signing certificate (repeat for rollover)")
    m.add_argument("--entity-id", default=DEFAULT_IDP)
    m.add_argument("--out", default="-")
    m.set_defaults(func=cmd_metadata)

    r = sub.add_parser("response", help="a SAML Response (base64 on stdout)")
    r.add_argument("--sp-entity", required=True, help="SP entityID (Audience, SPNameQualifier)")
    r.add_argument("--acs", required=True, help="ACS URL (Destination, Recipient)")
    r.add_argument("--issuer", default=DEFAULT_IDP)
    r.add_argument("--assertion-issuer", default=None, help="Assertion's Issuer (default: --issuer)")
    r.add_argument("--key", required=True)
    r.add_argument("--cert", required=True)
    r.add_argument("--sign", choices=["response", "assertion", "both", "none"], default=None,
                   help="what carries an enveloped signature (default both; attacks have their own)")
    r.add_argument("--signer", choices=["signxml", "xmlsec1"], default="signxml")
    r.add_argument("--sig-alg", choices=list(SIG_ALGS), default="rsa-sha256")
    r.add_argument("--digest-alg", choices=list(DIGEST_ALGS), default=None,
                   help="default sha1 with rsa-sha1, else sha256")
    r.add_argument("--nameid", default="GM0012345")
    r.add_argument("--nameid-format", default=NAMEID_PERSISTENT)
    r.add_argument("--attr-name-format", default=ATTRNAME_BASIC)
    r.add_argument("--attr-xsi-type", default="xs:string", help="AttributeValue xsi:type, or none")
    r.add_argument("--default-ns-assertion", action="store_true",
                   help="ADFS style: <Assertion xmlns=\"urn:...:assertion\"> without a prefix")
    r.add_argument("--inclusive-ns", default=None, metavar="PREFIXES",
                   help="exclusive c14n InclusiveNamespaces PrefixList, e.g. \"ds saml samlp xs xsi\"")
    r.add_argument("--not-before-offset", type=int, default=0, help="NotBefore = now + S (Salesforce: -30)")
    r.add_argument("--evil-nameid", default="GM9999999", help="identity the attacks try to smuggle in")
    r.add_argument("--attr", action="append", metavar="NAME=VALUE",
                   help="set/replace an attribute (repeat the same NAME for several values)")
    r.add_argument("--drop-attr", action="append", metavar="NAME")
    r.add_argument("--time-offset", type=int, default=0, help="shift every instant by S seconds")
    r.add_argument("--validity", type=int, default=600, help="NotOnOrAfter = now + S")
    r.add_argument("--issue-instant-offset", type=int, default=0,
                   help="shift only the IssueInstants (Response, Assertion) by S seconds more")
    r.add_argument("--audience", default=None)
    r.add_argument("--extra-audience-restriction", action="append", metavar="AUDIENCE",
                   help="add another AudienceRestriction with this single Audience")
    r.add_argument("--scd-validity", type=int, default=None,
                   help="SubjectConfirmationData NotOnOrAfter = now + S (default: --validity)")
    r.add_argument("--no-audience", action="store_true", help="omit AudienceRestriction")
    r.add_argument("--recipient", default=None, help="SubjectConfirmationData Recipient (none: omit)")
    r.add_argument("--destination", default=None, help="Response Destination (none: omit)")
    r.add_argument("--in-response-to", default=None)
    r.add_argument("--envelope-in-response-to", default=None,
                   help="InResponseTo on the Response only (overrides --in-response-to there; "
                        "the SubjectConfirmationData keeps --in-response-to or none)")
    r.add_argument("--no-authn-statement", action="store_true",
                   help="an Assertion without AuthnStatement (Web SSO profile 4.1.4.2 wants one)")
    r.add_argument("--status", choices=["Success", "Responder", "Requester", "AuthnFailed"], default="Success")
    r.add_argument("--no-bearer", action="store_true", help="SubjectConfirmation method holder-of-key")
    r.add_argument("--no-subject-confirmation", action="store_true")
    r.add_argument("--no-assertion", action="store_true", help="a Response without an Assertion")
    r.add_argument("--comment-in-nameid", action="store_true",
                   help="sign a NameID/gmisAccountId of the form HEAD<!---->TAIL (signed string HEADTAIL)")
    r.add_argument("--cdata-in-nameid", action="store_true",
                   help="same with HEAD<![CDATA[TAIL]]>")
    r.add_argument("--charref-in-nameid", action="store_true",
                   help="same with the first character of TAIL as &#N;")
    r.add_argument("--attack", choices=sorted(ATTACKS), default=None)
    r.add_argument("--relay-state", default=None, help="ignored (not part of the XML)")
    r.add_argument("--xml", action="store_true", help="print the XML instead of base64")
    r.add_argument("--self-check", action="store_true",
                   help="verify the signatures with signxml and xmlsec1; result on stderr")
    r.set_defaults(func=cmd_response)
    return p


def main():
    a = build_parser().parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
