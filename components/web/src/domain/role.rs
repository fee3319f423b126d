//! The roles an admin's form offers (the contract's four for people; `service` is no person's).
//! Who may give which is the user service's rule; this only refuses what is no role.

pub use marketplace_shared::Role;

/// The roles the form offers, in its order.
pub const OFFERED: [Role; 4] = [Role::Buyer, Role::Seller, Role::Carrier, Role::Admin];

/// What the form says of a value that is none of them.
pub const NOT_A_ROLE: &str =
    "Choose one of the four roles: buyer, seller, carrier or administrator.";

/// A role from the form: exactly one of the contract's names (no case folding, no padding
/// beyond what the form trims).
pub fn parse(raw: &str) -> Option<Role> {
    Role::parse(raw).filter(|r| OFFERED.contains(r))
}

/// What the form shows.
pub fn label(role: Role) -> &'static str {
    match role {
        Role::Buyer => "Buyer",
        Role::Seller => "Seller",
        Role::Carrier => "Carrier",
        Role::Admin => "Administrator",
        Role::Service => "Service",
    }
}

/// "a buyer", "an administrator".
pub fn with_article(role: Role) -> String {
    let label = label(role).to_lowercase();
    let article = if label.starts_with('a') { "an" } else { "a" };
    format!("{article} {label}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_roles_parse_and_nothing_else_does() {
        for r in OFFERED {
            assert_eq!(parse(r.as_str()), Some(r));
        }
        assert_eq!(parse("carrier"), Some(Role::Carrier));
        assert_eq!(with_article(Role::Carrier), "a carrier");
        assert_eq!(with_article(Role::Admin), "an administrator");
        for bad in [
            "",
            "Admin",
            "ADMIN",
            " admin",
            "service",
            "root",
            "buyer,admin",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
