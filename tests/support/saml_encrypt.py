#!/usr/bin/env python3
"""Independent XML Encryption of the Assertion in a SAML Response, for samlgate's tests.

The cryptography (RSA-OAEP / RSA-1_5 key transport, AES-CBC / AES-GCM content) is done with
python `cryptography`, the XML by hand (templates written here), so nothing is shared with the
gateway's openssl/quick-xml code. `--engine xmlsec1` encrypts with the xmlsec1 CLI instead
(libxmlsec1: a second independent implementation).

Sub-commands:

  encrypt --in RESP.xml --cert SP.crt [--cert SP2.crt ...] --out OUT.xml [options]
      Replaces the one saml:Assertion of RESP.xml (byte range found in the raw text; it may be
      signed) by a saml:EncryptedAssertion; everything else stays byte for byte, except the
      namespace declarations `--ds-decl root` adds to the Response start tag.
      --key-transport rsa-oaep-mgf1p | rsa-oaep-mgf1p-sha256 | xmlenc11-rsa-oaep
                      | xmlenc11-rsa-oaep-sha256 | xmlenc11-rsa-oaep-sha512-mgf1sha384 | rsa-1_5
      --data          aes128-cbc | aes192-cbc | aes256-cbc | aes128-gcm | aes192-gcm | aes256-gcm
      --placement     keyinfo (EncryptedKey inside EncryptedData/ds:KeyInfo)
                      | sibling (EncryptedKey next to EncryptedData, ds:RetrievalMethod to it)
                      | sibling-noref (next to it, no RetrievalMethod, no KeyInfo)
      --ds-decl       local (xenc/ds/xenc11 prefixes declared where first used)
                      | root (declared on the Response start tag)
                      | ancestor (declared on the EncryptedAssertion)
                      | default-ns (no prefixes: <EncryptedData xmlns="...xmlenc#">, ADFS style)
      --hint          cert | keyname | issuer-serial | ski | none  (EncryptedKey's ds:KeyInfo;
                      repeat once per --cert; the last one is reused)
      --key-name N    the ds:KeyName for --hint keyname (repeatable like --hint)
      --plaintext     raw (the Assertion's exact bytes) | lxml (lxml re-serialisation, which
                      declares the inherited namespaces on the Assertion)
      --strip-saml-decl  remove the Assertion's own xmlns:<saml prefix> declaration from the
                      plaintext and declare it on the EncryptedAssertion instead (the plaintext
                      then depends on its XML-Enc parsing context)
      --pad           random (XML-Enc padding: arbitrary bytes, count last) | pkcs7
      --oaep-label T  xenc:OAEPparams (label) T
      --data-alg-uri / --kt-alg-uri URI  write this Algorithm instead (encrypt as usual)
      --tamper        data | tag | key  (flip one bit after encryption)
      --expected FILE write the document a correct in-place decryption must give back
      --engine        python | xmlsec1 (xmlsec1: rsa-oaep-mgf1p, placement keyinfo, hint cert)
  batch FILE
      One `encrypt` argument list per line (shell quoting); all run in this one process.
"""
import argparse
import base64
import os
import re
import shlex
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
NS_XENC11 = "http://www.w3.org/2009/xmlenc11#"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
PREFIX = {NS_XENC: "xenc", NS_DS: "ds", NS_XENC11: "xenc11"}

DATA = {
    "aes128-cbc": (NS_XENC + "aes128-cbc", 16, "cbc"),
    "aes192-cbc": (NS_XENC + "aes192-cbc", 24, "cbc"),
    "aes256-cbc": (NS_XENC + "aes256-cbc", 32, "cbc"),
    "aes128-gcm": (NS_XENC11 + "aes128-gcm", 16, "gcm"),
    "aes192-gcm": (NS_XENC11 + "aes192-gcm", 24, "gcm"),
    "aes256-gcm": (NS_XENC11 + "aes256-gcm", 32, "gcm"),
}
DIGEST_URI = {
    "sha1": "http://www.w3.org/2000/09/xmldsig#sha1",
    "sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
    "sha384": "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "sha512": "http://www.w3.org/2001/04/xmlenc#sha512",
}
HASH = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
# name -> (Algorithm URI, OAEP digest or None to omit DigestMethod, MGF digest or None to omit MGF, padding kind)
KEY_TRANSPORT = {
    "rsa-oaep-mgf1p": (NS_XENC + "rsa-oaep-mgf1p", None, None, "oaep"),
    "rsa-oaep-mgf1p-sha256": (NS_XENC + "rsa-oaep-mgf1p", "sha256", None, "oaep"),
    "xmlenc11-rsa-oaep": (NS_XENC11 + "rsa-oaep", None, None, "oaep"),
    "xmlenc11-rsa-oaep-sha256": (NS_XENC11 + "rsa-oaep", "sha256", "sha256", "oaep"),
    "xmlenc11-rsa-oaep-sha512-mgf1sha384": (NS_XENC11 + "rsa-oaep", "sha512", "sha384", "oaep"),
    "rsa-1_5": (NS_XENC + "rsa-1_5", None, None, "pkcs1"),
}
TYPE_ELEMENT = NS_XENC + "Element"


def die(msg):
    print(f"saml_encrypt.py: {msg}", file=sys.stderr)
    sys.exit(2)


def b64(data):
    return base64.b64encode(data).decode()


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").replace(">", "&gt;")


# ------------------------------------------------------------------------------------------
# A tiny serialiser that declares namespaces according to --ds-decl.

class E:
    def __init__(self, ns, local, attrs=None, kids=None, text=None):
        self.ns, self.local, self.attrs, self.kids, self.text = ns, local, attrs or {}, kids or [], text


def ser(node, scope, style, saml_prefix, extra_decls=None):
    """scope: prefix ('' = default) -> URI in force at this point."""
    decls = dict(extra_decls or {})
    if node.ns == NS_SAML:
        qn = f"{saml_prefix}:{node.local}" if saml_prefix else node.local
        p = saml_prefix
    elif style == "default-ns":
        qn, p = node.local, ""
    else:
        p = PREFIX[node.ns]
        qn = f"{p}:{node.local}"
    if scope.get(p) != node.ns and decls.get(p) != node.ns:
        decls[p] = node.ns
    inner = dict(scope)
    inner.update(decls)
    parts = [f"<{qn}"]
    for k, v in decls.items():
        parts.append(f' xmlns:{k}="{esc(v)}"' if k else f' xmlns="{esc(v)}"')
    for k, v in node.attrs.items():
        parts.append(f' {k}="{esc(v)}"')
    if not node.kids and node.text is None:
        parts.append("/>")
        return "".join(parts)
    parts.append(">")
    if node.text is not None:
        parts.append(esc(node.text))
    for k in node.kids:
        parts.append(ser(k, inner, style, saml_prefix))
    parts.append(f"</{qn}>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------

def find_assertion(raw):
    """(start, end, prefix, element, parent nsmap) of the one saml:Assertion, from the raw text."""
    root = etree.fromstring(raw.encode())
    found = root.findall(f".//{{{NS_SAML}}}Assertion")
    if len(found) != 1:
        die(f"expected one saml:Assertion, found {len(found)}")
    a = found[0]
    prefix = a.prefix or ""
    qn = f"{prefix}:Assertion" if prefix else "Assertion"
    starts = [m.start() for m in re.finditer(r"<" + re.escape(qn) + r"(?=[\s/>])", raw)]
    if len(starts) != 1:
        die(f"expected one <{qn} in the raw text, found {len(starts)}")
    start = starts[0]
    close = raw.find(f"</{qn}>", start)
    if close < 0:
        die("no closing tag for the Assertion")
    end = close + len(f"</{qn}>")
    return start, end, prefix, a, a.getparent().nsmap


def wrap_text(s, width=76):
    return "\n".join(s[i:i + width] for i in range(0, len(s), width))


def encrypt_content(data_name, key, plaintext, pad):
    _, _, mode = DATA[data_name]
    if mode == "gcm":
        iv = os.urandom(12)
        return iv + AESGCM(key).encrypt(iv, plaintext, None)
    iv = os.urandom(16)
    n = 16 - len(plaintext) % 16  # 1..16
    if pad == "pkcs7":
        padding = bytes([n]) * n
    else:
        padding = os.urandom(n - 1) + bytes([n])
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + enc.update(plaintext + padding) + enc.finalize()


def key_transport(kt_name, cert, cek, label):
    _, md, mgf, kind = KEY_TRANSPORT[kt_name]
    pub = cert.public_key()
    if kind == "pkcs1":
        return pub.encrypt(cek, asym_padding.PKCS1v15())
    return pub.encrypt(cek, asym_padding.OAEP(
        mgf=asym_padding.MGF1(HASH[mgf or "sha1"]()),
        algorithm=HASH[md or "sha1"](),
        label=label))


def hint_node(hint, cert, key_name):
    if hint == "none":
        return None
    if hint == "keyname":
        return E(NS_DS, "KeyInfo", kids=[E(NS_DS, "KeyName", text=key_name or "")])
    if hint == "cert":
        der = cert.public_bytes(serialization.Encoding.DER)
        x = E(NS_DS, "X509Data", kids=[E(NS_DS, "X509Certificate", text=wrap_text(b64(der)))])
    elif hint == "issuer-serial":
        x = E(NS_DS, "X509Data", kids=[E(NS_DS, "X509IssuerSerial", kids=[
            E(NS_DS, "X509IssuerName", text=cert.issuer.rfc4514_string()),
            E(NS_DS, "X509SerialNumber", text=str(cert.serial_number))])])
    elif hint == "ski":
        ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            pass
        x = E(NS_DS, "X509Data", kids=[E(NS_DS, "X509SKI", text=b64(ski))])
    else:
        die(f"unknown hint {hint}")
    return E(NS_DS, "KeyInfo", kids=[x])


def flip(data, index):
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def cmd_encrypt(a):
    raw = open(a.inp, encoding="utf-8").read()
    start, end, sp, assertion, parent_nsmap = find_assertion(raw)
    certs = [x509.load_pem_x509_certificate(open(c, "rb").read()) for c in a.cert]

    if a.plaintext == "raw":
        plain = raw[start:end]
    else:
        plain = etree.tostring(assertion, encoding="unicode", with_tail=False)
    expected_plain = plain
    ea_decls = {}
    if sp and parent_nsmap.get(sp) != NS_SAML:
        ea_decls[sp] = NS_SAML  # the saml prefix is not bound at the Response level
    if a.strip_saml_decl:
        decl = f' xmlns:{sp}="{NS_SAML}"' if sp else f' xmlns="{NS_SAML}"'
        head_end = plain.index(">")
        if decl not in plain[:head_end]:
            die("--strip-saml-decl: the Assertion start tag does not declare its prefix")
        plain = plain[:head_end].replace(decl, "", 1) + plain[head_end:]
        ea_decls[sp] = NS_SAML

    if a.engine == "xmlsec1":
        out = xmlsec1_encrypt(a, raw, start, end, sp, ea_decls)
        write(a.out, out)
        if a.expected:
            # libxml2 re-serialises the document (it adds an XML declaration when there was
            # none): the expectation is its output with the original Assertion put back.
            qn = f"{sp}:EncryptedAssertion" if sp else "EncryptedAssertion"
            i = out.index(f"<{qn}")
            j = out.index(f"</{qn}>") + len(f"</{qn}>")
            write(a.expected, out[:i] + expected_plain + out[j:])
        return

    data_uri, key_len, mode = DATA[a.data]
    cek = os.urandom(key_len)
    ct = encrypt_content(a.data, cek, plain.encode("utf-8"), a.pad)
    if a.tamper == "data":
        ct = flip(ct, len(ct) // 2)
    elif a.tamper == "tag":
        ct = flip(ct, len(ct) - 1)

    kt_uri, md, mgf, _ = KEY_TRANSPORT[a.key_transport]
    label = a.oaep_label.encode() if a.oaep_label is not None else None
    hints = a.hint or ["cert"]
    names = a.key_name or [""]
    eks = []
    for i, cert in enumerate(certs):
        wrapped = key_transport(a.key_transport, cert, cek, label)
        if a.tamper == "key":
            wrapped = flip(wrapped, 5)
        em_kids = []
        if md:
            em_kids.append(E(NS_DS, "DigestMethod", {"Algorithm": DIGEST_URI[md]}))
        if mgf:
            em_kids.append(E(NS_XENC11, "MGF", {"Algorithm": f"{NS_XENC11}mgf1{mgf}"}))
        if label is not None:
            em_kids.append(E(NS_XENC, "OAEPparams", text=b64(label)))
        kids = [E(NS_XENC, "EncryptionMethod", {"Algorithm": a.kt_alg_uri or kt_uri}, em_kids)]
        h = hint_node(hints[min(i, len(hints) - 1)], cert, names[min(i, len(names) - 1)])
        if h is not None:
            kids.append(h)
        kids.append(E(NS_XENC, "CipherData", kids=[E(NS_XENC, "CipherValue", text=wrap_text(b64(wrapped)))]))
        attrs = {"Id": f"_ek{i + 1}"} if a.placement != "keyinfo" else {}
        if a.placement != "keyinfo":
            kids.append(E(NS_XENC, "ReferenceList", kids=[E(NS_XENC, "DataReference", {"URI": "#_ed1"})]))
        eks.append(E(NS_XENC, "EncryptedKey", attrs, kids))

    ed_kids = [E(NS_XENC, "EncryptionMethod", {"Algorithm": a.data_alg_uri or data_uri})]
    if a.placement == "keyinfo":
        ed_kids.append(E(NS_DS, "KeyInfo", kids=eks))
    elif a.placement == "sibling":
        ed_kids.append(E(NS_DS, "KeyInfo", kids=[
            E(NS_DS, "RetrievalMethod", {"URI": f"#_ek{i + 1}", "Type": NS_XENC + "EncryptedKey"})
            for i in range(len(eks))]))
    ed_kids.append(E(NS_XENC, "CipherData", kids=[E(NS_XENC, "CipherValue", text=wrap_text(b64(ct)))]))
    ed = E(NS_XENC, "EncryptedData", {"Id": "_ed1", "Type": TYPE_ELEMENT}, ed_kids)
    ea_kids = [ed] + (eks if a.placement != "keyinfo" else [])
    ea = E(NS_SAML, "EncryptedAssertion", kids=ea_kids)

    scope = {sp: NS_SAML} if sp not in ea_decls else {}
    before, after = raw[:start], raw[end:]
    if a.ds_decl == "root":
        decls = "".join(f' xmlns:{PREFIX[n]}="{n}"' for n in (NS_XENC, NS_DS, NS_XENC11))
        m = re.search(r"<(?![?!])[^\s/>]+", before)  # the root start tag (no DOCTYPE in SAML)
        name_end = m.end()
        before = before[:name_end] + decls + before[name_end:]
        scope.update({PREFIX[n]: n for n in (NS_XENC, NS_DS, NS_XENC11)})
        style = "local"
    elif a.ds_decl == "ancestor":
        ea_decls.update({PREFIX[n]: n for n in (NS_XENC, NS_DS, NS_XENC11)})
        style = "local"
    else:
        style = a.ds_decl
    ea_text = ser(ea, scope, style, sp, ea_decls)
    write(a.out, before + ea_text + after)
    if a.expected:
        write(a.expected, before + expected_plain + after)


def xmlsec1_encrypt(a, raw, start, end, sp, ea_decls):
    """Wraps the Assertion in an EncryptedAssertion and lets xmlsec1 encrypt the Assertion."""
    if a.key_transport != "rsa-oaep-mgf1p" or a.placement != "keyinfo" or len(a.cert) != 1:
        die("--engine xmlsec1 does rsa-oaep-mgf1p, placement keyinfo, one --cert")
    data_uri, key_len, _ = DATA[a.data]
    qn = f"{sp}:EncryptedAssertion" if sp else "EncryptedAssertion"
    decl = "".join(f' xmlns:{p}="{u}"' if p else f' xmlns="{u}"' for p, u in ea_decls.items())
    wrapped = raw[:start] + f"<{qn}{decl}>" + raw[start:end] + f"</{qn}>" + raw[end:]
    tmpl = f"""<xenc:EncryptedData xmlns:xenc="{NS_XENC}" xmlns:ds="{NS_DS}" Type="{TYPE_ELEMENT}">
<xenc:EncryptionMethod Algorithm="{data_uri}"/>
<ds:KeyInfo>
<xenc:EncryptedKey>
<xenc:EncryptionMethod Algorithm="{NS_XENC}rsa-oaep-mgf1p"/>
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData>
</xenc:EncryptedKey>
</ds:KeyInfo>
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData>
</xenc:EncryptedData>"""
    with tempfile.TemporaryDirectory() as d:
        data_p, tmpl_p, out_p = (os.path.join(d, n) for n in ("data.xml", "tmpl.xml", "out.xml"))
        write(data_p, wrapped)
        write(tmpl_p, tmpl)
        cmd = ["xmlsec1", "encrypt", "--pubkey-cert-pem", a.cert[0],
               "--session-key", f"aes-{key_len * 8}", "--xml-data", data_p,
               "--node-xpath", f"//*[local-name()='Assertion' and namespace-uri()='{NS_SAML}']",
               "--output", out_p, tmpl_p]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"xmlsec1 failed: {r.stderr}{r.stdout}")
        return open(out_p, encoding="utf-8").read()


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encrypt")
    e.add_argument("--in", dest="inp", required=True)
    e.add_argument("--cert", action="append", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--expected")
    e.add_argument("--key-transport", choices=sorted(KEY_TRANSPORT), default="rsa-oaep-mgf1p")
    e.add_argument("--data", choices=sorted(DATA), default="aes128-cbc")
    e.add_argument("--placement", choices=["keyinfo", "sibling", "sibling-noref"], default="keyinfo")
    e.add_argument("--ds-decl", choices=["local", "root", "ancestor", "default-ns"], default="local")
    e.add_argument("--hint", action="append", choices=["cert", "keyname", "issuer-serial", "ski", "none"])
    e.add_argument("--key-name", action="append")
    e.add_argument("--plaintext", choices=["raw", "lxml"], default="raw")
    e.add_argument("--strip-saml-decl", action="store_true")
    e.add_argument("--pad", choices=["random", "pkcs7"], default="random")
    e.add_argument("--oaep-label")
    e.add_argument("--data-alg-uri")
    e.add_argument("--kt-alg-uri")
    e.add_argument("--tamper", choices=["data", "tag", "key"])
    e.add_argument("--engine", choices=["python", "xmlsec1"], default="python")
    b = sub.add_parser("batch")
    b.add_argument("file")
    return p


def main(argv):
    p = parser()
    a = p.parse_args(argv)
    if a.cmd == "encrypt":
        cmd_encrypt(a)
        return
    with open(a.file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                cmd_encrypt(p.parse_args(["encrypt"] + shlex.split(line)))
            except SystemExit as x:
                die(f"{a.file}:{n}: job failed ({x.code}): {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
