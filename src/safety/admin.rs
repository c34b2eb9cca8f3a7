//! `GET /breakers` (every breaker's count and state) and `POST /breakers/reset?name=NAME`
//! (closes the breakers named `NAME` or `NAME:<value>`), served beside `/metrics`. A reset
//! lets commands through again, so it needs the bearer token of `[safety] admin_token_file`;
//! without one configured the reset is refused (403). Held commands stay held: a reset
//! releases nothing.

use super::breakers::{lock, SharedBreakers};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

/// What the endpoints act on.
#[derive(Clone)]
pub struct Admin {
    pub breakers: SharedBreakers,
    /// The reset token; `None`: resets are refused.
    pub token: Option<Arc<str>>,
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
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same(given.as_bytes(), token.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "wrong or missing bearer token\n").into_response();
    }
    let closed = lock(&admin.breakers).reset(&q.name);
    tracing::warn!(breaker = %q.name, closed, "circuit breaker reset by an operator");
    Json(serde_json::json!({ "closed": closed })).into_response()
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
