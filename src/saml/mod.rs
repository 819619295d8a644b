//! SAML: IdP metadata in, SP metadata out, and the ACS verification path.

pub mod acs;
pub mod idp;
pub mod metadata;
pub mod prescan;
