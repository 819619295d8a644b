#!/usr/bin/env python3
"""pysaml2's IdP (saml2.server.Server) as a second independent IdP implementation for samlgate's
interop tests: it builds and signs the Response itself (pysaml2 signs through the xmlsec1 CLI).

  pysaml2_idp.py response --sp-metadata SP.xml --key KEY --cert CRT --entity-id ID
                          --acs URL --sp-entity ID [--sign response|assertion|both]
                          [--nameid ID] [--attr NAME=VALUE ...] [--xml]

Prints the base64 SAMLResponse (or the XML with --xml).
"""
import argparse
import base64
import shutil
import sys
import warnings

# pysaml2 7.5 touches cryptography's moved CFB mode at import; not ours to fix.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*CFB.*")

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server

ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("response")
    r.add_argument("--sp-metadata", required=True)
    r.add_argument("--key", required=True)
    r.add_argument("--cert", required=True)
    r.add_argument("--entity-id", required=True)
    r.add_argument("--acs", required=True)
    r.add_argument("--sp-entity", required=True)
    r.add_argument("--sign", choices=["response", "assertion", "both"], default="both")
    r.add_argument("--nameid", default="GM0500001")
    r.add_argument("--attr", action="append", default=[])
    r.add_argument("--xml", action="store_true")
    r.add_argument("--sha1", action="store_true", help="pysaml2's default RSA-SHA1/SHA-1 (else SHA-256)")
    a = p.parse_args()

    xmlsec = shutil.which("xmlsec1")
    if not xmlsec:
        sys.exit("xmlsec1 CLI not found (pysaml2 signs with it)")
    cfg = IdPConfig().load({
        "entityid": a.entity_id,
        "xmlsec_binary": xmlsec,
        "key_file": a.key,
        "cert_file": a.cert,
        "metadata": {"local": [a.sp_metadata]},
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [
                (a.entity_id + "/sso", BINDING_HTTP_REDIRECT),
                (a.entity_id + "/sso/post", BINDING_HTTP_POST)]},
            "name_id_format": [NAMEID_FORMAT_PERSISTENT],
            "policy": {"default": {"lifetime": {"minutes": 5},
                                    "attribute_restrictions": None,
                                    "name_form": ATTRNAME_BASIC,
                                    "sign_response": a.sign in ("response", "both"),
                                    "sign_assertion": a.sign in ("assertion", "both")}},
        }},
    })
    idp = Server(config=cfg)
    identity = {
        "gmisAccountId": [a.nameid],
        "accountCategory": ["病院"],
        "facilityCode": ["1310000001"],
        "facilityName": ["テスト病院"],
        "displayName": ["山田 太郎"],
        "mail": ["yamada@example.jp"],
    }
    for kv in a.attr:
        k, _, v = kv.partition("=")
        identity[k] = [v]
    name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=a.nameid,
                     name_qualifier=a.entity_id, sp_name_qualifier=a.sp_entity)
    resp = idp.create_authn_response(
        identity, in_response_to=None, destination=a.acs, sp_entity_id=a.sp_entity,
        name_id=name_id, userid=a.nameid,
        sign_response=a.sign in ("response", "both"),
        sign_assertion=a.sign in ("assertion", "both"),
        sign_alg=None if a.sha1 else "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        digest_alg=None if a.sha1 else "http://www.w3.org/2001/04/xmlenc#sha256",
        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
               "authn_auth": a.entity_id})
    xml = str(resp).encode("utf-8")
    if a.xml:
        sys.stdout.buffer.write(xml)
    else:
        sys.stdout.write(base64.b64encode(xml).decode() + "\n")


if __name__ == "__main__":
    main()
