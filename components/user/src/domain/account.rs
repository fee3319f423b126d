//! Account fields that exist only once parsed: [`Email`], [`DisplayName`], [`RegistrationRole`].

use marketplace_shared::Role;
use serde::Serialize;

use super::bounded;

/// Longest email accepted (RFC 5321 path limit).
pub const EMAIL_MAX_CHARS: usize = 254;
/// Longest display name accepted.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;

/// A syntactically plausible email address, trimmed.
///
/// Deliberately not a full RFC 5322 parser: one `@`, a non-empty local part of at most 64
/// characters without spaces or control characters, and a domain of dot-separated
/// LDH labels with at least one dot. Deliverability is not this service's concern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        bounded(s, EMAIL_MAX_CHARS, "must be at most 254 characters")?;
        let (local, domain) = s.rsplit_once('@').ok_or("must be an email address")?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control())
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(s.to_string()))
        } else {
            Err("must be an email address")
        }
    }

    /// The address as the user wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form emails are compared and made unique in: trimmed and lowercased.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        bounded(s, DISPLAY_NAME_MAX_CHARS, "must be at most 100 characters")?;
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The roles a user may pick at registration (contract: `buyer`, the default, or `seller`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationRole(Role);

impl RegistrationRole {
    pub fn parse(raw: Option<&str>) -> Result<Self, &'static str> {
        match raw {
            None | Some("buyer") => Ok(Self(Role::Buyer)),
            Some("seller") => Ok(Self(Role::Seller)),
            Some(_) => Err("must be `buyer` or `seller`"),
        }
    }

    pub fn role(self) -> Role {
        self.0
    }
}

/// A role an admin may assign: any of the four user roles, never `service`.
pub fn parse_assignable_role(raw: &str) -> Result<Role, &'static str> {
    match Role::parse(raw) {
        Some(Role::Service) | None => Err("must be one of `buyer`, `seller`, `carrier`, `admin`"),
        Some(role) => Ok(role),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_normalised_to_lowercase() {
        let e = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith@Example.COM");
        assert_eq!(e.normalized(), "alice.smith@example.com");
    }

    #[test]
    fn implausible_emails_are_refused() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            "a@example..com",
            ".a@example.com",
            "a\u{0}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ann ").unwrap().as_str(), "Ann");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert!(DisplayName::parse("a\nb").is_err());
    }

    #[test]
    fn registration_allows_only_buyer_and_seller() {
        let parse = |raw| RegistrationRole::parse(raw).map(RegistrationRole::role);
        assert_eq!(parse(None), Ok(Role::Buyer));
        assert_eq!(parse(Some("seller")), Ok(Role::Seller));
        for bad in ["admin", "carrier", "service", "Buyer", ""] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn admins_may_assign_the_four_user_roles_only() {
        assert_eq!(parse_assignable_role("carrier").unwrap(), Role::Carrier);
        assert_eq!(parse_assignable_role("admin").unwrap(), Role::Admin);
        assert!(parse_assignable_role("service").is_err());
        assert!(parse_assignable_role("root").is_err());
    }
}
