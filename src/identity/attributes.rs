//! SAML attributes -> [`Profile`], by the `[attributes]` map.

use super::Profile;
use crate::config::AttributeMap;
use crate::reason::{Reason, Refusal};

/// Maps a verified assertion's NameID and attributes to a profile.
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
        if values.len() > 1 && (field == "account_id" || field == "category") {
            return Err(Refusal::new(
                Reason::AttributeMissing,
                format!(
                    "{field}: attribute {attr_name:?} has {} values, expected one",
                    values.len()
                ),
            ));
        }
        let v = values.first().map(|s| s.trim()).unwrap_or("");
        *p.field_mut(field).expect("known field") = v.to_string();
    }
    for field in &map.required {
        if p.field(field).is_none_or(str::is_empty) {
            let attr = map
                .pairs()
                .iter()
                .find(|(f, _)| f == field)
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
}
