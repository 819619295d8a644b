//! SAML attributes -> [`Profile`], by the `[attributes]` map.

use super::Profile;
use crate::config::AttributeMap;
use crate::model::ProfileField;
use crate::reason::{Reason, Refusal};

/// Maps a verified assertion's NameID and attributes to a profile.
///
/// Attributes are matched on their `Name` exactly, so URI names work as configured
/// (`urn:oid:0.9.2342.19200300.100.1.3`,
/// `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress`). `FriendlyName` is
/// never matched: SAML core §2.7.3.1 says it "MUST NOT be used as a basis for formally
/// identifying SAML attributes", and two attributes may share one.
///
/// A field maps to one attribute Name (or `"NameID"`). A multi-valued attribute is refused for
/// `account_id` and `category` (which one would we trust?); for the other fields the first
/// value is used. A required field that is absent or empty refuses the login.
pub fn map_profile(
    map: &AttributeMap,
    name_id: &str,
    attributes: &[(String, Vec<String>)],
) -> Result<Profile, Refusal> {
    let mut p = Profile::default();
    for (field, attr_name) in map.pairs() {
        let values: Vec<&str> = if attr_name == "NameID" {
            vec![name_id]
        } else {
            attributes
                .iter()
                .filter(|(n, _)| n == attr_name)
                .flat_map(|(_, vs)| vs.iter().map(String::as_str))
                .collect()
        };
        if values.len() > 1 && matches!(field, ProfileField::AccountId | ProfileField::Category) {
            return Err(Refusal::new(
                Reason::AttributeMissing,
                format!(
                    "{field}: attribute {attr_name:?} has {} values, expected one",
                    values.len()
                ),
            ));
        }
        let v = values.first().map(|s| s.trim()).unwrap_or("");
        // A configured value table ([attributes.transform]); unlisted values pass unchanged,
        // so an IdP that already sends the final form keeps working, and the policy decides
        // on the raw value (an unknown code is in no open category: fails closed).
        let v = map
            .transform
            .get(field.name())
            .and_then(|t| t.get(v))
            .map(String::as_str)
            .unwrap_or(v);
        *p.field_mut(field) = v.to_string();
    }
    for field in map.required_fields() {
        if p.field(field).is_empty() {
            let attr = map
                .pairs()
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, a)| a.to_string());
            return Err(Refusal::new(
                Reason::AttributeMissing,
                format!(
                    "required {field} (attribute {:?}) is missing or empty",
                    attr.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Vec<(String, Vec<String>)> {
        vec![
            ("gmisAccountId".into(), vec!["GM0012345".into()]),
            ("accountCategory".into(), vec!["病院".into()]),
            ("facilityCode".into(), vec!["1310000001".into()]),
            ("facilityName".into(), vec!["テスト病院".into()]),
            ("displayName".into(), vec!["山田 太郎".into()]),
        ]
    }

    #[test]
    fn maps_fields_and_allows_missing_optional() {
        let p = map_profile(&AttributeMap::default(), "nid", &attrs()).unwrap();
        assert_eq!(p.account_id, "GM0012345");
        assert_eq!(p.category, "病院");
        assert_eq!(p.facility_name, "テスト病院");
        assert_eq!(p.email, "");
    }

    #[test]
    fn name_id_can_be_a_field() {
        let map = AttributeMap {
            account_id: "NameID".into(),
            ..AttributeMap::default()
        };
        let p = map_profile(&map, "GM777", &attrs()).unwrap();
        assert_eq!(p.account_id, "GM777");
    }

    #[test]
    fn missing_required_refused_with_field_name() {
        let mut a = attrs();
        a.retain(|(n, _)| n != "accountCategory");
        let r = map_profile(&AttributeMap::default(), "nid", &a).unwrap_err();
        assert_eq!(r.reason, Reason::AttributeMissing);
        assert!(r.detail.contains("category"), "{}", r.detail);
    }

    #[test]
    fn facility_code_is_optional_by_default() {
        // 保健所 and 都道府県 accounts have no facility code.
        let mut a = attrs();
        a.retain(|(n, _)| n != "facilityCode");
        let p = map_profile(&AttributeMap::default(), "nid", &a).unwrap();
        assert_eq!(p.facility_code, "");
        let strict = AttributeMap {
            required: vec!["account_id".into(), "facility_code".into()],
            ..AttributeMap::default()
        };
        let r = map_profile(&strict, "nid", &a).unwrap_err();
        assert!(r.detail.contains("facility_code"), "{}", r.detail);
    }

    #[test]
    fn two_account_ids_refused() {
        let mut a = attrs();
        a[0].1.push("GM999".into());
        assert!(map_profile(&AttributeMap::default(), "nid", &a).is_err());
    }

    #[test]
    fn uri_names_map_verbatim() {
        let map = AttributeMap {
            account_id: "http://schemas.microsoft.com/identity/claims/objectidentifier".into(),
            category: "urn:oid:2.5.4.15".into(),
            email: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress".into(),
            facility_name: "urn:oid:2.5.4.10".into(),
            ..AttributeMap::default()
        };
        let a = vec![
            (map.account_id.clone(), vec!["GM1".into()]),
            (map.category.clone(), vec!["病院".into()]),
            (map.email.clone(), vec!["a@example.jp".into()]),
            // Same FriendlyName-like short name as a Name: must not be taken for email.
            ("mail".into(), vec!["wrong@example.jp".into()]),
            (map.facility_name.clone(), vec!["テスト病院".into()]),
        ];
        let p = map_profile(&map, "nid", &a).unwrap();
        assert_eq!(p.account_id, "GM1");
        assert_eq!(p.email, "a@example.jp");
        assert_eq!(p.facility_name, "テスト病院");
    }

    #[test]
    fn transform_table_maps_listed_values_only() {
        let mut map = AttributeMap::default();
        map.transform.insert(
            "category".into(),
            [("01", "病院"), ("02", "診療所")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut a = attrs();
        a[1].1 = vec![" 01 ".into()];
        assert_eq!(map_profile(&map, "nid", &a).unwrap().category, "病院");
        a[1].1 = vec!["99".into()];
        assert_eq!(map_profile(&map, "nid", &a).unwrap().category, "99");
        a[1].1 = vec!["病院".into()];
        assert_eq!(map_profile(&map, "nid", &a).unwrap().category, "病院");
    }
}
