//! containd: the containment daemon for the identity bus.
//!
//! A signal flows through the modules in this order:
//!
//! - [`codec`] decodes bytes (Avro single-object, Confluent wire format, JSON) into a
//!   [`signal::Signal`], which [`signal::validate`] checks against CAEP/RISC and RFC 9493;
//! - [`trust`] admits only configured sources, within their authority, verifies raw SSF
//!   SETs and recognises redelivered signals;
//! - [`rules`] holds the loaded containment rules and evaluates them;
//! - [`decide`] turns a signal and the matching rules into commands and a decision record;
//! - [`safety`] holds what automated containment may not do alone (protected identities,
//!   approval policies, circuit breakers); [`approvals`] publishes held commands and applies
//!   the operators' approvals and denials;
//! - [`disclosure`] cuts each command down to what its target may receive about the subject;
//! - [`emit`] defines what leaves containd: commands, decision records, dead letters;
//! - [`lifecycle`] follows each command to its adapter's result: re-sends, escalation, time
//!   to containment, `containd status`; [`decide::expiry`] restores what expires with
//!   `on_expiry: restore`;
//! - [`pipeline`] is the Kafka loop around it all: consume, process (on `decide.workers`
//!   cores, partitions spread over [`state::Stores`]), produce, and commit offsets only once
//!   every output is acknowledged (or in one transaction);
//! - [`telemetry`] exports metrics, health and logs; [`config`] loads and validates settings;
//!   [`cli`] is the command line (`run`, `check`, `demo`, `rules test`, `replay`,
//!   `approvals`, `breakers`, `status`, `audit`), [`evidence`] chains the decision records
//!   and audits them, [`demo`]
//!   the embedded demo, [`offline`] rule tests and what-if replay without Kafka.

pub mod approvals;
pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod decide;
pub mod demo;
pub mod disclosure;
pub mod emit;
pub mod evidence;
pub mod inventory;
pub mod lifecycle;
pub mod offline;
pub mod pipeline;
pub mod rules;
pub mod safety;
pub mod signal;
pub mod state;
pub mod telemetry;
pub mod trust;
