//! Telemetry: Prometheus metrics, the health endpoints and logging. Metric names live only
//! in `metrics.rs`; call sites record typed events.

pub mod exposition;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod rails;
pub mod throttle;

pub use metrics::Metrics;
