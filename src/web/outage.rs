//! The "G-MIS is unavailable" page: `/saml/login` answers with it instead of a redirect to an
//! IdP that `[idp] status_url` found down (crate::idp_source::status). It offers the
//! ID/password login and the 事務局 contact, and shows the operator's notice.

use askama::Template;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::StatusCode;

use super::pages::{self, Lang};
use super::{App, Resp};
use crate::reason::Reason;

#[derive(Template)]
#[template(path = "idp_down.html")]
struct IdpDownPage<'a> {
    lang: Lang,
    request_id: &'a str,
    local_href: &'a str,
    retry_href: &'a str,
}

impl IdpDownPage<'_> {
    fn reference(&self) -> String {
        pages::support_ref(self.request_id)
    }
}

/// `Some(page)` when the IdP is known to be down; `None`: go on to the IdP.
pub fn gate(app: &App, lang: Lang, return_to: &str, rid: &str) -> Option<Resp> {
    if !app.idp_status.idp_down(app.cfg.idp_source.status.as_ref()) {
        return None;
    }
    let q = |path: &str| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if return_to != "/" {
            s.append_pair("return_to", return_to);
        }
        if lang == Lang::En {
            s.append_pair("lang", "en");
        }
        let q = s.finish();
        if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{q}")
        }
    };
    let page = IdpDownPage {
        lang,
        request_id: rid,
        local_href: &q("/login"),
        retry_href: &q("/saml/login"),
    };
    app.metrics.refused(Reason::IdpUnavailable);
    tracing::warn!(target: "samlgate::sso", request_id = rid, reason = Reason::IdpUnavailable.code(), "SP-initiated login not started: G-MIS is down ([idp] status_url); outage page shown");
    let mut r = pages::render(StatusCode::SERVICE_UNAVAILABLE, &page);
    let h = r.headers_mut();
    h.insert(
        "x-samlgate-reason",
        HeaderValue::from_static(Reason::IdpUnavailable.code()),
    );
    h.insert(RETRY_AFTER, HeaderValue::from_static("60"));
    Some(r)
}
