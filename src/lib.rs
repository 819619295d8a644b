//! samlgate: a SAML 2.0 service-provider gateway for the 医療情報ネット staff menu.
//!
//! The path of one login: `web::acs` (HTTP) -> `saml::acs` (verification) -> `identity`
//! (profile, policy) -> `store` (replay cache, session) -> `session` (cookie). See DESIGN.md.

pub mod account_ops;
pub mod accounts;
pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod expiry;
pub mod identity;
pub mod idp_ops;
pub mod idp_source;
pub mod keys;
pub mod local_login;
pub mod login;
pub mod mail;
pub mod model;
pub mod notice;
pub mod password_reset;
pub mod rate_limit;
pub mod reason;
pub mod reload;
pub mod request_target;
pub mod return_path;
pub mod saml;
pub mod secretariat;
pub mod server;
pub mod session;
pub mod sessions;
pub mod store;
pub mod timezone;
pub mod token;
pub mod web;
