//! SP metadata out: what the IdP operator loads. Written by hand because samael's generator
//! mislabels the encryption KeyDescriptor and can list only one certificate.

use crate::config::Config;
use crate::keys::KeySet;

pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            _ => o.push(c),
        }
    }
    o
}

/// The SP's metadata: entityID, every published signing key (active and next), the ACS on the
/// HTTP-POST binding, and the NameID formats we accept.
///
/// No `use="encryption"` KeyDescriptor is published: this build does not decrypt
/// EncryptedAssertion, and advertising a key would invite the IdP to encrypt.
pub fn sp_metadata(cfg: &Config, keys: &KeySet) -> String {
    let mut kd = String::new();
    for k in keys.published() {
        kd.push_str(&format!(
            "    <md:KeyDescriptor use=\"signing\">\n      <ds:KeyInfo><ds:KeyName>{}</ds:KeyName><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\n    </md:KeyDescriptor>\n",
            xml_escape(&k.id),
            k.cert_b64
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
{kd}    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{slo}"/>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{slo}"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
        entity = xml_escape(&cfg.sp_entity_id),
        signed = cfg.sign_authn_requests,
        acs = xml_escape(&cfg.acs_url()),
        slo = xml_escape(&cfg.slo_url()),
    )
}
