//! The sealed token the 「SSO利用申請を行う」 form carries: the verified profile of the login
//! that was refused, so only that login can file, and only for itself (web::apply reads it).

use serde::{Deserialize, Serialize};

use super::App;
use crate::identity::policy::ApplicationNeed;
use crate::identity::Profile;

const PURPOSE: &str = "apply-v1";
/// Time to fill in the form.
const TOKEN_TTL_SECS: i64 = 30 * 60;

#[derive(Serialize, Deserialize)]
pub(super) struct ApplyToken {
    pub(super) profile: Profile,
    pub(super) link: bool,
    exp: i64,
}

pub fn token(app: &App, p: &Profile, need: ApplicationNeed) -> String {
    let t = ApplyToken {
        profile: p.clone(),
        link: need == ApplicationNeed::ExistingAccount,
        exp: chrono::Utc::now().timestamp() + TOKEN_TTL_SECS,
    };
    let json = serde_json::to_vec(&t).expect("token serialises");
    app.sessions.seal_data(PURPOSE, &json)
}

pub(super) fn open(app: &App, token: &str) -> Option<ApplyToken> {
    let b = app.sessions.open_data(PURPOSE, token)?;
    let t: ApplyToken = serde_json::from_slice(&b).ok()?;
    (t.exp > chrono::Utc::now().timestamp()).then_some(t)
}
