//! SAML: IdP metadata in, SP metadata out, and the ACS verification path.

pub mod acs;
pub mod authn;
pub mod decrypt;
pub mod diagnose;
pub mod idp;
pub mod metadata;
pub mod prescan;
pub mod slo;
