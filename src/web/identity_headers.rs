//! The identity headers a session carries to the staff menu (forward-auth, the proxy, the
//! verify cache): names, fields and their encoding, in one leaf both sides use.

use hyper::header::{HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::model::{Profile, ProfileField};

/// Non-ASCII and these are percent-encoded in identity headers; `%` itself so decoding is exact.
const HEADER_ENCODE: &AsciiSet = &CONTROLS.add(b'%');

/// Identity headers, DESIGN.md "Identity headers".
pub const IDENTITY_HEADERS: [(&str, ProfileField); 6] = [
    ("x-auth-request-user", ProfileField::AccountId),
    ("x-auth-request-email", ProfileField::Email),
    ("x-samlgate-category", ProfileField::Category),
    ("x-samlgate-facility-code", ProfileField::FacilityCode),
    ("x-samlgate-facility-name", ProfileField::FacilityName),
    ("x-samlgate-display-name", ProfileField::DisplayName),
];

pub fn encode_header_value(v: &str) -> HeaderValue {
    let enc = utf8_percent_encode(v, HEADER_ENCODE).to_string();
    HeaderValue::from_str(&enc).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn identity_headers(p: &Profile) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
    IDENTITY_HEADERS.iter().map(move |(h, field)| {
        (
            HeaderName::from_static(h),
            encode_header_value(p.field(*field)),
        )
    })
}
