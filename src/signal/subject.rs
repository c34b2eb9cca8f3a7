//! RFC 9493 subject identifiers, plus the SSF complex subject.
//!
//! A subject is kept as format + identifier members (what arrived), and a canonical id is
//! derived from it: that id keys the output records so all commands of one identity stay in
//! one partition, in order.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A subject as it arrived. `format` is `complex` or one of [`SubjectFormat`]'s names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// Google's RISC sends `subject_type` where the spec says `format`: both are accepted.
    #[serde(alias = "subject_type")]
    pub format: String,
    #[serde(default)]
    pub identifiers: BTreeMap<String, String>,
    #[serde(default)]
    pub aliases: Vec<SimpleSubject>,
    #[serde(default)]
    pub user: Option<SimpleSubject>,
    #[serde(default)]
    pub device: Option<SimpleSubject>,
    #[serde(default)]
    pub session: Option<SimpleSubject>,
    #[serde(default)]
    pub application: Option<SimpleSubject>,
    #[serde(default)]
    pub tenant: Option<SimpleSubject>,
    #[serde(default)]
    pub org_unit: Option<SimpleSubject>,
    #[serde(default)]
    pub group: Option<SimpleSubject>,
}

/// One simple-format identifier (a member of a complex subject or of an aliases list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleSubject {
    #[serde(alias = "subject_type")]
    pub format: String,
    #[serde(default)]
    pub identifiers: BTreeMap<String, String>,
}

/// The simple formats of RFC 9493 and SSF, with the members each requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectFormat {
    Account,
    Email,
    IssSub,
    Opaque,
    PhoneNumber,
    Did,
    Uri,
    Aliases,
    JwtId,
    SamlAssertionId,
    IpAddresses,
    Complex,
}

impl SubjectFormat {
    pub const ALL: &'static [SubjectFormat] = &[
        Self::Account,
        Self::Email,
        Self::IssSub,
        Self::Opaque,
        Self::PhoneNumber,
        Self::Did,
        Self::Uri,
        Self::Aliases,
        Self::JwtId,
        Self::SamlAssertionId,
        Self::IpAddresses,
        Self::Complex,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Email => "email",
            Self::IssSub => "iss_sub",
            Self::Opaque => "opaque",
            Self::PhoneNumber => "phone_number",
            Self::Did => "did",
            Self::Uri => "uri",
            Self::Aliases => "aliases",
            Self::JwtId => "jwt_id",
            Self::SamlAssertionId => "saml_assertion_id",
            Self::IpAddresses => "ip-addresses",
            Self::Complex => "complex",
        }
    }

    /// Identifier members that must be present; their values, joined by `|`, form the id.
    pub fn required_members(self) -> &'static [&'static str] {
        match self {
            Self::Account => &["uri"],
            Self::Email => &["email"],
            Self::IssSub => &["iss", "sub"],
            Self::Opaque => &["id"],
            Self::PhoneNumber => &["phone_number"],
            Self::Did => &["url"],
            Self::Uri => &["uri"],
            Self::JwtId => &["iss", "jti"],
            Self::SamlAssertionId => &["issuer", "assertion_id"],
            Self::IpAddresses => &["ip-addresses"],
            Self::Aliases | Self::Complex => &[],
        }
    }
}

impl SimpleSubject {
    /// `None` when the format is unknown or a required member is missing (validation reports
    /// which).
    pub fn id(&self) -> Option<String> {
        let format = SubjectFormat::parse(&self.format)?;
        simple_id(format, &self.identifiers)
    }
}

fn simple_id(format: SubjectFormat, identifiers: &BTreeMap<String, String>) -> Option<String> {
    let members = format.required_members();
    if members.is_empty() {
        return None;
    }
    let mut id = String::new();
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            id.push('|');
        }
        id.push_str(identifiers.get(*member).filter(|v| !v.is_empty())?);
    }
    Some(id)
}

impl Subject {
    /// Names of the complex-subject members, in the schema's order.
    pub const MEMBER_NAMES: [&'static str; 7] = [
        "user",
        "device",
        "session",
        "application",
        "tenant",
        "org_unit",
        "group",
    ];

    /// The complex member at `i` of [`Self::MEMBER_NAMES`].
    pub fn member(&self, i: usize) -> Option<&SimpleSubject> {
        [
            &self.user,
            &self.device,
            &self.session,
            &self.application,
            &self.tenant,
            &self.org_unit,
            &self.group,
        ]
        .get(i)
        .and_then(|m| m.as_ref())
    }

    /// Complex members in the order that picks the canonical id: the application or agent
    /// acting is what containment is about, then the user, session, device and scopes.
    pub fn members(&self) -> [(&'static str, Option<&SimpleSubject>); 7] {
        [
            ("application", self.application.as_ref()),
            ("user", self.user.as_ref()),
            ("session", self.session.as_ref()),
            ("device", self.device.as_ref()),
            ("tenant", self.tenant.as_ref()),
            ("org_unit", self.org_unit.as_ref()),
            ("group", self.group.as_ref()),
        ]
    }

    /// The canonical subject id, or `None` when the subject is not valid.
    pub fn id(&self) -> Option<String> {
        match SubjectFormat::parse(&self.format)? {
            SubjectFormat::Complex => self.members().into_iter().find_map(|(_, m)| m?.id()),
            SubjectFormat::Aliases => self.aliases.iter().find_map(SimpleSubject::id),
            simple => simple_id(simple, &self.identifiers),
        }
    }

    /// The format of the identifier the canonical id came from.
    pub fn id_format(&self) -> &str {
        match self.format.as_str() {
            "complex" => self
                .members()
                .into_iter()
                .find_map(|(_, m)| m.filter(|m| m.id().is_some()))
                .map_or("complex", |m| m.format.as_str()),
            "aliases" => self
                .aliases
                .iter()
                .find(|m| m.id().is_some())
                .map_or("aliases", |m| m.format.as_str()),
            other => other,
        }
    }

    /// The identifier members of the canonical id, as the target knows the subject.
    pub fn id_identifiers(&self) -> BTreeMap<String, String> {
        match self.format.as_str() {
            "complex" => self
                .members()
                .into_iter()
                .find_map(|(_, m)| m.filter(|m| m.id().is_some()))
                .map(|m| m.identifiers.clone())
                .unwrap_or_default(),
            "aliases" => self
                .aliases
                .iter()
                .find(|m| m.id().is_some())
                .map(|m| m.identifiers.clone())
                .unwrap_or_default(),
            _ => self.identifiers.clone(),
        }
    }

    /// A subject of `format` with no identifiers or members yet.
    pub fn empty(format: &str) -> Self {
        Self {
            format: format.into(),
            identifiers: BTreeMap::new(),
            aliases: Vec::new(),
            user: None,
            device: None,
            session: None,
            application: None,
            tenant: None,
            org_unit: None,
            group: None,
        }
    }

    /// Whether the complex member (`user`, `device`, …) is present.
    pub fn has_member(&self, member: &str) -> bool {
        self.members()
            .into_iter()
            .any(|(name, m)| name == member && m.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(format: &str, pairs: &[(&str, &str)]) -> SimpleSubject {
        SimpleSubject {
            format: format.into(),
            identifiers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn subject(format: &str) -> Subject {
        Subject::empty(format)
    }

    #[test]
    fn iss_sub_id_joins_both_members() {
        let mut s = subject("iss_sub");
        s.identifiers = simple("iss_sub", &[("iss", "https://idp"), ("sub", "42")]).identifiers;
        assert_eq!(s.id().as_deref(), Some("https://idp|42"));
    }

    #[test]
    fn complex_prefers_application_over_device() {
        let mut s = subject("complex");
        s.device = Some(simple("opaque", &[("id", "dev-1")]));
        s.application = Some(simple("opaque", &[("id", "svc-7")]));
        assert_eq!(s.id().as_deref(), Some("svc-7"));
        assert_eq!(s.id_format(), "opaque");
        assert!(s.has_member("device"));
        assert!(!s.has_member("user"));
    }

    #[test]
    fn missing_member_or_unknown_format_has_no_id() {
        let mut s = subject("email");
        assert_eq!(s.id(), None);
        s.format = "carrier-pigeon".into();
        s.identifiers.insert("email".into(), "a@b".into());
        assert_eq!(s.id(), None);
    }
}
