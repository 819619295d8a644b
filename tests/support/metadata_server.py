#!/usr/bin/env python3
"""An HTTPS server for IdP metadata (tests/metadata_refresh.rs), its PKI, and an independent
metadata signer (signxml).

  pki   --out DIR                      ca.crt, server.crt/server.key for 127.0.0.1
  serve --dir DIR --port N             GET /md.xml -> DIR/md.xml, GET /status -> DIR/status
                                       (an HTTP status code, default 200); DIR/delay (seconds)
                                       delays every answer. Files are read per request, so a
                                       test changes behaviour by writing them. Prints "ready".
  sign  --key K --cert C --in F --out G [--valid-until T] [--cache-duration D]
                                       enveloped RSA-SHA256 signature over the EntityDescriptor
  edit  --in F --out G [--valid-until T] [--cache-duration D] [--pad N]
"""
import argparse
import datetime
import http.server
import ipaddress
import os
import ssl
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"


def cmd_pki(a):
    os.makedirs(a.out, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "samlgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    with open(os.path.join(a.out, "ca.crt"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(a.out, "server.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(a.out, "server.key"), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def read(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return default


def cmd_serve(a):
    d = a.dir

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            delay = read(os.path.join(d, "delay"))
            if delay:
                time.sleep(float(delay))
            if self.path == "/md.xml":
                body = read(os.path.join(d, "md.xml"), b"")
                code = 200
            elif self.path == "/status":
                code = int(read(os.path.join(d, "status"), b"200"))
                body = b"status\n"
            else:
                code, body = 404, b"not found\n"
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), H)
    srv.daemon_threads = True
    if not a.plain:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready", flush=True)
    srv.serve_forever()


def set_attrs(root, a):
    if a.valid_until:
        root.set("validUntil", a.valid_until)
    if a.cache_duration:
        root.set("cacheDuration", a.cache_duration)


def cmd_sign(a):
    root = etree.parse(a.inp).getroot()
    root.set("ID", "_md" + os.urandom(8).hex())
    set_attrs(root, a)
    with open(a.key, "rb") as f:
        key = f.read()
    with open(a.cert, "rb") as f:
        cert = f.read()
    signed = XMLSigner(
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    ).sign(root, key=key, cert=cert, reference_uri="#" + root.get("ID"))
    # The signature goes first inside the EntityDescriptor, as the metadata schema wants it.
    sig = signed.find("{http://www.w3.org/2000/09/xmldsig#}Signature")
    signed.remove(sig)
    signed.insert(0, sig)
    with open(a.out, "wb") as f:
        f.write(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def cmd_edit(a):
    root = etree.parse(a.inp).getroot()
    set_attrs(root, a)
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    if a.pad:
        xml += b"<!--" + b"x" * a.pad + b"-->\n"
    with open(a.out, "wb") as f:
        f.write(xml)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("pki")
    s.add_argument("--out", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--dir", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--plain", action="store_true")
    for name in ("sign", "edit"):
        s = sub.add_parser(name)
        s.add_argument("--in", dest="inp", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--valid-until")
        s.add_argument("--cache-duration")
        if name == "sign":
            s.add_argument("--key", required=True)
            s.add_argument("--cert", required=True)
        else:
            s.add_argument("--pad", type=int, default=0)
    a = p.parse_args()
    {"pki": cmd_pki, "serve": cmd_serve, "sign": cmd_sign, "edit": cmd_edit}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
