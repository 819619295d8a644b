//! `POST /admin/v1/op`: the secretariat's API. Off (404) unless `[admin] token_file` is set;
//! then every call needs `Authorization: Bearer <token>` (compared as SHA-256, in constant
//! time). Keep `/admin/` off the public proxy: nginx in deploy/ does not forward it.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use sha2::Digest;

use super::pages::{self, Resp};
use super::App;
use crate::admin::{execute_cfg, AdminError, Op};

fn json(status: StatusCode, v: serde_json::Value) -> Resp {
    pages::text(status, "application/json", v.to_string())
}

pub async fn op(app: &App, req: Request<Incoming>, rid: &str) -> Resp {
    let Some(want) = app.cfg.admin_token_sha256 else {
        return pages::text(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let got: [u8; 32] = sha2::Sha256::digest(given.trim().as_bytes()).into();
    if got
        .iter()
        .zip(want.iter())
        .fold(0u8, |a, (x, y)| a | (x ^ y))
        != 0
    {
        tracing::warn!(target: "samlgate::admin", request_id = rid, reason = crate::reason::Reason::BadToken.code(), "admin API refused");
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "bearer token required"}),
        );
    }
    let body = match Limited::new(req.into_body(), 4 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"error": "body too large"}),
            )
        }
    };
    let op: Op = match serde_json::from_slice(&body) {
        Ok(op) => op,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("not an operation: {e}")}),
            )
        }
    };
    let store = app.store.clone();
    let cfg = app.cfg.clone();
    let op2 = op.clone();
    let r = tokio::task::spawn_blocking(move || execute_cfg(&*store, &cfg, &op2)).await;
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": e.to_string()}),
            )
        }
    };
    let name = serde_json::to_value(&op)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str().map(str::to_string)))
        .unwrap_or_default();
    match r {
        Ok(v) => {
            if op.changes_state() {
                tracing::info!(target: "samlgate::admin", request_id = rid, op = %name, "admin change");
            }
            json(StatusCode::OK, v)
        }
        Err(e) => {
            let status = match e {
                AdminError::NotFound(_) => StatusCode::NOT_FOUND,
                AdminError::Invalid(_) => StatusCode::CONFLICT,
                AdminError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json(status, serde_json::json!({"error": e.to_string()}))
        }
    }
}
