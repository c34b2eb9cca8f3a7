//! The CAEP 1.0 and RISC 1.0 event type URIs. Other namespaced types (NHI extensions, PAM,
//! incident platforms) are accepted as long as they are namespaced; a URI under the CAEP or
//! RISC prefix that neither profile defines is rejected as unknown.

pub const CAEP_PREFIX: &str = "https://schemas.openid.net/secevent/caep/event-type/";
pub const RISC_PREFIX: &str = "https://schemas.openid.net/secevent/risc/event-type/";

pub mod caep {
    pub const SESSION_REVOKED: &str = "session-revoked";
    pub const TOKEN_CLAIMS_CHANGE: &str = "token-claims-change";
    pub const CREDENTIAL_CHANGE: &str = "credential-change";
    pub const ASSURANCE_LEVEL_CHANGE: &str = "assurance-level-change";
    pub const DEVICE_COMPLIANCE_CHANGE: &str = "device-compliance-change";
    pub const SESSION_ESTABLISHED: &str = "session-established";
    pub const SESSION_PRESENTED: &str = "session-presented";
    pub const RISK_LEVEL_CHANGE: &str = "risk-level-change";
    pub const ALL: &[&str] = &[
        SESSION_REVOKED,
        TOKEN_CLAIMS_CHANGE,
        CREDENTIAL_CHANGE,
        ASSURANCE_LEVEL_CHANGE,
        DEVICE_COMPLIANCE_CHANGE,
        SESSION_ESTABLISHED,
        SESSION_PRESENTED,
        RISK_LEVEL_CHANGE,
    ];
}

pub mod risc {
    pub const ACCOUNT_CREDENTIAL_CHANGE_REQUIRED: &str = "account-credential-change-required";
    pub const ACCOUNT_PURGED: &str = "account-purged";
    pub const ACCOUNT_DISABLED: &str = "account-disabled";
    pub const ACCOUNT_ENABLED: &str = "account-enabled";
    pub const IDENTIFIER_CHANGED: &str = "identifier-changed";
    pub const IDENTIFIER_RECYCLED: &str = "identifier-recycled";
    pub const CREDENTIAL_COMPROMISE: &str = "credential-compromise";
    pub const OPT_IN: &str = "opt-in";
    pub const OPT_OUT_INITIATED: &str = "opt-out-initiated";
    pub const OPT_OUT_CANCELLED: &str = "opt-out-cancelled";
    pub const OPT_OUT_EFFECTIVE: &str = "opt-out-effective";
    pub const RECOVERY_ACTIVATED: &str = "recovery-activated";
    pub const RECOVERY_INFORMATION_CHANGED: &str = "recovery-information-changed";
    /// Deprecated in favour of CAEP session-revoked, still sent by some transmitters.
    pub const SESSIONS_REVOKED: &str = "sessions-revoked";
    pub const ALL: &[&str] = &[
        ACCOUNT_CREDENTIAL_CHANGE_REQUIRED,
        ACCOUNT_PURGED,
        ACCOUNT_DISABLED,
        ACCOUNT_ENABLED,
        IDENTIFIER_CHANGED,
        IDENTIFIER_RECYCLED,
        CREDENTIAL_COMPROMISE,
        OPT_IN,
        OPT_OUT_INITIATED,
        OPT_OUT_CANCELLED,
        OPT_OUT_EFFECTIVE,
        RECOVERY_ACTIVATED,
        RECOVERY_INFORMATION_CHANGED,
        SESSIONS_REVOKED,
    ];
}

/// `Some(true)` for a defined CAEP/RISC type, `Some(false)` for an undefined one under those
/// prefixes, `None` for a type outside both profiles.
pub fn is_known_caep_or_risc(event_type: &str) -> Option<bool> {
    if let Some(name) = event_type.strip_prefix(CAEP_PREFIX) {
        Some(caep::ALL.contains(&name))
    } else {
        event_type
            .strip_prefix(RISC_PREFIX)
            .map(|name| risc::ALL.contains(&name))
    }
}
