//! The life of a command after containd issued it: what adapters report back
//! (`schemas/command_result.avsc`, docs/adapters.md) and what is contained for an identity now.
//!
//! Built so far: `containd status`, which reads the state changelog and the results topic
//! directly (no daemon needed). The daemon's own use of results — time to containment,
//! re-issue and escalation — is the rest of issue 13.

pub mod status;
