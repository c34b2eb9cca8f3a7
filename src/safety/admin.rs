//! `GET /breakers` (every breaker's count and state) and `POST /breakers/reset?name=NAME`
//! (closes the breakers named `NAME` or `NAME:<value>`), served beside `/metrics`. A reset
//! lets commands through again, so it needs the bearer token of `[safety] admin_token_file`;
//! without one configured the reset is refused (403). Held commands stay held: a reset
//! releases nothing.

use super::breakers::{lock, SharedBreakers};
use crate::trust::bearer::{self, TokenHash};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// What the endpoints act on.
#[derive(Clone)]
pub struct Admin {
    pub breakers: SharedBreakers,
    /// The reset token's digest; `None`: resets are refused.
    pub token: Option<TokenHash>,
}

#[derive(serde::Deserialize)]
struct ResetQuery {
    name: String,
}

impl Admin {
    pub fn routes<S>(self) -> Router<S> {
        Router::new()
            .route("/breakers", get(list))
            .route("/breakers/reset", post(reset))
            .with_state(self)
    }
}

async fn list(State(admin): State<Admin>) -> Response {
    Json(lock(&admin.breakers).list(crate::trust::now_ms())).into_response()
}

async fn reset(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<ResetQuery>,
) -> Response {
    let Some(token) = &admin.token else {
        return (
            StatusCode::FORBIDDEN,
            "breaker reset is disabled: set [safety] admin_token_file\n",
        )
            .into_response();
    };
    let allowed = bearer::presented(&headers).is_some_and(|p| bearer::same(&p, token));
    if !allowed {
        return (StatusCode::UNAUTHORIZED, "wrong or missing bearer token\n").into_response();
    }
    let closed = lock(&admin.breakers).reset(&q.name);
    tracing::warn!(breaker = %q.name, closed, "circuit breaker reset by an operator");
    Json(serde_json::json!({ "closed": closed })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BreakerScope, BreakerSettings};
    use crate::telemetry::{http, Metrics};
    use std::sync::Arc;
    use std::time::Duration;

    /// Serves the endpoints on a free port; returns its base URL.
    async fn serve(admin: Admin) -> String {
        let addr = "127.0.0.1:0".parse().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(crate::telemetry::http::Health::default());
        let (local, server) =
            http::serve(addr, metrics, health, Some(admin), std::future::pending())
                .await
                .unwrap();
        tokio::spawn(server);
        format!("http://{local}")
    }

    /// (status, body) of a request, off the async threads.
    async fn call(url: String, post: bool, token: Option<&'static str>) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut response = match (post, token) {
                (false, _) => agent.get(&url).call(),
                (true, Some(t)) => agent
                    .post(&url)
                    .header("Authorization", &format!("Bearer {t}"))
                    .send_empty(),
                (true, None) => agent.post(&url).send_empty(),
            }
            .unwrap();
            let status = response.status().as_u16();
            (status, response.body_mut().read_to_string().unwrap())
        })
        .await
        .unwrap()
    }

    fn open_breaker() -> SharedBreakers {
        let mut b = super::super::breakers::Breakers::new(&[BreakerSettings {
            name: "per-source".into(),
            scope: BreakerScope::Source,
            only: None,
            max: 1,
            per: Duration::from_secs(3600),
            cooldown: Duration::from_secs(3600),
        }]);
        let command: crate::emit::EnforcementCommand = serde_json::from_value(serde_json::json!({
            "command_id": "0".repeat(32), "action": "revoke_sessions", "target": "okta",
            "principal_id": null, "subject": {"id": "s", "format": "opaque", "identifiers": {}},
            "parameters": {}, "issued_at": 0, "expires_at": null,
            "why": {"rule_id": "r", "ruleset_version": "v", "signal_ids": [], "event_type": "e",
                    "description": null}}))
        .unwrap();
        let now = crate::trust::now_ms();
        b.admit(std::slice::from_ref(&command), "https://leaks", now);
        b.admit(std::slice::from_ref(&command), "https://leaks", now);
        Arc::new(std::sync::Mutex::new(b))
    }

    #[tokio::test]
    async fn a_reset_needs_the_token_and_a_list_shows_the_open_breaker() {
        let breakers = open_breaker();
        let base = serve(Admin {
            breakers: breakers.clone(),
            token: Some(crate::trust::bearer::hash("s3cret-token")),
        })
        .await;
        let (status, body) = call(format!("{base}/breakers"), false, None).await;
        assert_eq!(status, 200);
        assert!(
            body.contains("\"per-source:https://leaks\"") && body.contains("\"open\":true"),
            "{body}"
        );
        let reset = format!("{base}/breakers/reset?name=per-source");
        assert_eq!(call(reset.clone(), true, None).await.0, 401);
        let (status, body) = call(reset.clone(), true, Some("wrong")).await;
        assert_eq!(status, 401);
        assert!(!body.contains("s3cret"));
        let (status, body) = call(reset, true, Some("s3cret-token")).await;
        assert_eq!((status, body.as_str()), (200, "{\"closed\":1}"));
        assert_eq!(lock(&breakers).open_count(crate::trust::now_ms()), 0);
    }

    #[tokio::test]
    async fn without_a_token_configured_resets_are_refused() {
        let breakers = open_breaker();
        let base = serve(Admin {
            breakers: breakers.clone(),
            token: None,
        })
        .await;
        let reset = format!("{base}/breakers/reset?name=per-source");
        assert_eq!(call(reset, true, Some("anything")).await.0, 403);
        assert_eq!(lock(&breakers).open_count(crate::trust::now_ms()), 1);
    }
}
