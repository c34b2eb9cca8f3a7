//! The SSF push receiver (RFC 8935): `POST /ssf/events` with a compact JWS SET as the body
//! (`application/secevent+jwt`) and a transmitter's bearer token. The SET is verified exactly
//! as the pipeline verifies it, checked against the source's authority, and produced — raw,
//! unchanged — to the configured signal topic, keyed by its subject; the answer is 202 only
//! once the broker has it. Errors are 400 with `{"err", "description"}` and the RFC's codes.
//! Kafka stays the source of truth: the pipeline verifies the SET again when it consumes it.

use super::{now_ms, Authority, SetVerifier};
use crate::config::{Settings, SsfPushSettings};
use crate::signal::validate;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("ssf_push.transmitters[{index}]: cannot read the bearer token: {reason}")]
    Token { index: usize, reason: String },
    #[error("ssf_push.listen: cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("SSF push producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("ssf_push.tls_cert / tls_key: {0}")]
    Tls(String),
}

/// The receiver's serving future (plain HTTP or HTTPS).
pub type Serving = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// A transmitter allowed to push: its name, the SHA-256 of its token, and its issuers.
struct Transmitter {
    name: String,
    token_hash: super::bearer::TokenHash,
    issuers: Vec<String>,
}

struct Receiver {
    transmitters: Vec<Transmitter>,
    verifier: SetVerifier,
    authority: Authority,
    producer: FutureProducer,
    topic: String,
}

/// Binds the listener and returns its address and the serving future.
pub async fn serve(
    settings: &Settings,
    push: &SsfPushSettings,
    verifier: SetVerifier,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, Serving), PushError> {
    let receiver = Arc::new(Receiver {
        transmitters: transmitters(push)?,
        verifier,
        authority: Authority::new(settings),
        producer: crate::pipeline::kafka::producer_config(settings, None).create()?,
        topic: push.topic.clone(),
    });
    let listener = tokio::net::TcpListener::bind(push.listen)
        .await
        .map_err(|source| PushError::Bind {
            addr: push.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| PushError::Bind {
        addr: push.listen,
        source,
    })?;
    let app = Router::new()
        .route("/ssf/events", post(receive))
        .layer(DefaultBodyLimit::max(push.max_body_bytes))
        .with_state(receiver);
    let serving: Serving = match (&push.tls_cert, &push.tls_key) {
        (Some(cert), Some(key)) => {
            let acceptor = super::push_tls::acceptor(cert, key).map_err(PushError::Tls)?;
            let tls = super::push_tls::TlsListener::new(listener, acceptor).map_err(|source| {
                PushError::Bind {
                    addr: push.listen,
                    source,
                }
            })?;
            Box::pin(async move { axum::serve(tls, app).with_graceful_shutdown(shutdown).await })
        }
        _ => Box::pin(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }),
    };
    Ok((local, serving))
}

fn transmitters(push: &SsfPushSettings) -> Result<Vec<Transmitter>, PushError> {
    let mut out = Vec::new();
    for (index, t) in push.transmitters.iter().enumerate() {
        let token = match (&t.token, &t.token_file, &t.token_env) {
            (Some(secret), _, _) => secret.expose().to_string(),
            (None, Some(p), _) => std::fs::read_to_string(p).map_err(|e| PushError::Token {
                index,
                reason: format!("{}: {e}", p.display()),
            })?,
            (None, None, Some(var)) => std::env::var(var).map_err(|_| PushError::Token {
                index,
                reason: format!("environment variable {var} is not set"),
            })?,
            (None, None, None) => String::new(),
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(PushError::Token {
                index,
                reason: "the token is empty".into(),
            });
        }
        out.push(Transmitter {
            name: t.name.clone(),
            token_hash: super::bearer::hash(token),
            issuers: t.issuers.clone(),
        });
    }
    Ok(out)
}

/// An RFC 8935 error answer.
fn refuse(err: &'static str, description: impl Into<String>) -> Response {
    let body = serde_json::json!({"err": err, "description": description.into()});
    let mut response = (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if err == "authentication_failed" {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

impl Receiver {
    /// The transmitter whose token the request bears. Tokens are compared as SHA-256 digests
    /// over every transmitter, so timing says nothing about a token's prefix.
    fn authenticate(&self, headers: &HeaderMap) -> Option<&Transmitter> {
        let presented = super::bearer::presented(headers)?;
        let mut found = None;
        for t in &self.transmitters {
            if super::bearer::same(&t.token_hash, &presented) {
                found = Some(t);
            }
        }
        found
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(transmitter) = r.authenticate(&headers) else {
        return refuse("authentication_failed", "missing or unknown bearer token");
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/secevent+jwt")
    {
        return refuse(
            "invalid_request",
            "content type must be application/secevent+jwt",
        );
    }
    let signal = match r.verifier.signal(&body, now_ms()) {
        Ok(s) => s,
        Err(e) => return refuse(e.push_code(), e.to_string()),
    };
    if !transmitter.issuers.contains(&signal.source.issuer) {
        return refuse(
            "access_denied",
            format!(
                "transmitter {:?} may not deliver SETs of issuer {:?}",
                transmitter.name, signal.source.issuer
            ),
        );
    }
    if let Err(e) = validate(&signal) {
        return refuse("invalid_request", e.to_string());
    }
    let now = now_ms();
    if let Err(e) = r.authority.admit(&signal, &r.topic, true, (now, now)) {
        return refuse("access_denied", e.to_string());
    }
    let key = signal.subject.id().unwrap_or_default();
    let record = FutureRecord::to(&r.topic)
        .key(&key)
        .payload(body.as_ref())
        .headers(OwnedHeaders::new().insert(Header {
            key: "containd.transmitter",
            value: Some(transmitter.name.as_bytes()),
        }));
    match r.producer.send(record, Duration::from_secs(10)).await {
        Ok(_) => {
            tracing::debug!(transmitter = %transmitter.name, jti = %signal.id, "SET accepted");
            StatusCode::ACCEPTED.into_response()
        }
        Err((e, _)) => {
            tracing::warn!(error = %e, "SET not produced; the transmitter will retry");
            let mut response =
                (StatusCode::SERVICE_UNAVAILABLE, "bus unavailable\n").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}
