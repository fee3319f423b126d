//! The four roles of the contract (`buyer`, `seller`, `carrier`, `admin`), as an admin's role
//! form sends them. Who may give which role is the user service's rule; this only refuses
//! what is no role before it is sent.

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Buyer,
    Seller,
    Carrier,
    Admin,
}

/// The form's value for a role that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotARole;

impl Role {
    /// Every role, in the order the form lists them.
    pub const ALL: [Role; 4] = [Role::Buyer, Role::Seller, Role::Carrier, Role::Admin];

    /// A role from the form: exactly one of the contract's names (no case folding, no
    /// padding beyond what the form trims).
    pub fn parse(raw: &str) -> Result<Self, NotARole> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or(NotARole)
    }

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
            Role::Carrier => "carrier",
            Role::Admin => "admin",
        }
    }

    /// "a buyer", "an administrator".
    pub fn with_article(self) -> String {
        let label = self.label().to_lowercase();
        let article = if label.starts_with('a') { "an" } else { "a" };
        format!("{article} {label}")
    }

    /// What the form shows.
    pub fn label(self) -> &'static str {
        match self {
            Role::Buyer => "Buyer",
            Role::Seller => "Seller",
            Role::Carrier => "Carrier",
            Role::Admin => "Administrator",
        }
    }
}

impl NotARole {
    pub fn message(&self) -> &'static str {
        "Choose one of the four roles: buyer, seller, carrier or administrator."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_roles_parse_and_nothing_else_does() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert_eq!(Role::parse("carrier"), Ok(Role::Carrier));
        assert_eq!(Role::Carrier.with_article(), "a carrier");
        assert_eq!(Role::Admin.with_article(), "an administrator");
        for bad in [
            "",
            "Admin",
            "ADMIN",
            " admin",
            "service",
            "root",
            "buyer,admin",
        ] {
            assert_eq!(Role::parse(bad), Err(NotARole), "{bad:?}");
        }
    }
}
