//! `/metrics`, `/healthz` and `/readyz`. Ready means: partitions are assigned, the producer
//! has reported no fatal error, the consumer reaches a broker, and no partition's state is
//! waiting for the broker.

use super::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Liveness and readiness facts, written by the pipeline.
#[derive(Debug, Default)]
pub struct Health {
    assigned: AtomicUsize,
    producer_failed: AtomicBool,
    /// Partitions whose state cannot be rebuilt right now (the broker is unreachable).
    restoring: AtomicUsize,
    /// A shutdown was asked for: retry loops give up waiting.
    stopping: AtomicBool,
    /// The consumer reaches no broker (librdkafka's AllBrokersDown, or its last statistics).
    brokers_down: AtomicBool,
}

impl Health {
    pub fn set_assigned(&self, n: usize) {
        self.assigned.store(n, Ordering::Relaxed);
    }

    pub fn producer_failed(&self) {
        self.producer_failed.store(true, Ordering::Relaxed);
    }

    /// A partition's state rebuild started failing (`true`) or succeeded after failing.
    pub fn restore_failing(&self, failing: bool) {
        if failing {
            self.restoring.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .restoring
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    pub fn set_brokers_down(&self, down: bool) {
        self.brokers_down.store(down, Ordering::Relaxed);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        self.assigned.load(Ordering::Relaxed) > 0
            && !self.producer_failed.load(Ordering::Relaxed)
            && self.restoring.load(Ordering::Relaxed) == 0
            && !self.brokers_down.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds the listener (so a bad address fails startup) and returns the serving future.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    admin: Option<crate::safety::admin::Admin>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health });
    let app = match admin {
        Some(admin) => app.merge(admin.routes()),
        None => app,
    };
    let fut = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    };
    Ok((local, fut))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
