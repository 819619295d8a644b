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

/// The SP's metadata: entityID, every published key (active and next) once with
/// `use="signing"` and once with `use="encryption"` listing only the algorithms
/// `saml::decrypt` really decrypts, the ACS on the HTTP-POST binding, SLO on Redirect and POST,
/// and the NameID formats we accept.
pub fn sp_metadata(cfg: &Config, keys: &KeySet) -> String {
    let mut kd = String::new();
    let methods: String = crate::saml::decrypt::DATA_ALGORITHMS
        .iter()
        .chain(crate::saml::decrypt::KEY_TRANSPORT_ALGORITHMS.iter())
        .map(|a| format!("\n      <md:EncryptionMethod Algorithm=\"{a}\"/>"))
        .collect();
    for k in keys.published() {
        let key_info = format!(
            "<ds:KeyInfo><ds:KeyName>{}</ds:KeyName><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
            xml_escape(&k.id),
            k.cert_b64
        );
        kd.push_str(&format!(
            "    <md:KeyDescriptor use=\"signing\">\n      {key_info}\n    </md:KeyDescriptor>\n"
        ));
        kd.push_str(&format!(
            "    <md:KeyDescriptor use=\"encryption\">\n      {key_info}{methods}\n    </md:KeyDescriptor>\n"
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
