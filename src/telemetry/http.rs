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
    /// Unix millis of the processing loop's last turn; 0 until it runs.
    heartbeat: std::sync::atomic::AtomicI64,
    /// The inventory is configured as required and not read yet.
    inventory_waiting: AtomicBool,
}

/// A loop silent for longer than this is stuck: `/healthz` fails and the orchestrator
/// restarts the process.
pub const LIVENESS_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

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

    /// The processing loop (or a startup wait) is turning.
    pub fn beat(&self) {
        self.heartbeat
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn set_inventory_waiting(&self, waiting: bool) {
        self.inventory_waiting.store(waiting, Ordering::Relaxed);
    }

    /// Alive unless the loop has run and then gone silent for [`LIVENESS_WINDOW`].
    pub fn is_live(&self) -> bool {
        self.is_live_at(chrono::Utc::now().timestamp_millis())
    }

    fn is_live_at(&self, now_ms: i64) -> bool {
        let last = self.heartbeat.load(Ordering::Relaxed);
        last == 0 || now_ms - last <= LIVENESS_WINDOW.as_millis() as i64
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why the instance is not ready, or `None`.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.inventory_waiting.load(Ordering::Relaxed) {
            Some("inventory not read yet")
        } else if self.brokers_down.load(Ordering::Relaxed) {
            Some("no broker reachable")
        } else if self.producer_failed.load(Ordering::Relaxed) {
            Some("producer failed")
        } else if self.restoring.load(Ordering::Relaxed) > 0 {
            Some("partition state waiting for the broker")
        } else if self.assigned.load(Ordering::Relaxed) == 0 {
            Some("no partitions assigned")
        } else {
            None
        }
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
        .route("/healthz", get(live_handler))
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

/// OpenMetrics when the scraper's `Accept` asks for it, the classic text format otherwise.
async fn metrics_handler(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    use super::exposition::{classic, wants_openmetrics, CLASSIC, OPENMETRICS};
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    s.metrics.set_ready(s.health.is_ready());
    let text = s.metrics.render();
    if wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text)
    } else {
        ([(header::CONTENT_TYPE, CLASSIC)], classic(&text))
    }
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics.set_ready(s.health.is_ready());
    match s.health.not_ready() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn live_handler(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_live() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "processing loop stalled\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_heartbeat_once_the_loop_runs() {
        let h = Health::default();
        let now = chrono::Utc::now().timestamp_millis();
        let window = LIVENESS_WINDOW.as_millis() as i64;
        assert!(h.is_live_at(now + 10 * window), "not started: alive");
        h.beat();
        assert!(h.is_live_at(now + window / 2));
        assert!(
            !h.is_live_at(now + window + 5_000),
            "silent past the window"
        );
    }

    #[test]
    fn readiness_says_why_not() {
        let h = Health::default();
        assert_eq!(h.not_ready(), Some("no partitions assigned"));
        h.set_assigned(2);
        assert!(h.is_ready());
        h.set_inventory_waiting(true);
        assert_eq!(h.not_ready(), Some("inventory not read yet"));
        h.set_inventory_waiting(false);
        h.set_brokers_down(true);
        assert_eq!(h.not_ready(), Some("no broker reachable"));
    }
}
