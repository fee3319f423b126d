//! Bootstrap admins, pure: the `admin_emails` list and who may hold one of its addresses.
//!
//! A listed address makes an admin of the account that **first** takes it (registration, or
//! the first login of an account that had it before it was listed), and of no other, ever:
//! the address is reserved for that account (a `reserved_admin_emails` row, never deleted),
//! so it is not freed by the account's deletion, an admin cannot move off it, and nobody can
//! move onto it. An operator who gives the holder another role revokes the bootstrap: the next
//! login no longer promotes it (the role an operator sets is the role it keeps).

use marketplace_shared::Role;
use uuid::Uuid;

use super::account::{Email, RegistrationRole};

/// The `admin_emails` variable: comma-separated, compared trimmed and case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminEmails(Vec<String>);

impl AdminEmails {
    pub fn parse(raw: &str) -> Self {
        let emails = raw.split(',').map(|e| e.trim().to_lowercase());
        Self(emails.filter(|e| !e.is_empty()).collect())
    }

    /// True when `email` is listed.
    pub fn lists(&self, email: &Email) -> bool {
        self.0.contains(&email.normalized())
    }
}

/// Who holds a listed address (its reservation), and whether an operator revoked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub holder: Uuid,
    pub revoked: bool,
}

/// The role a registration gets, and whether it must take the address's reservation (in the
/// same transaction: a reservation already held makes the registration a 409).
pub fn registration(listed: bool, asked: RegistrationRole) -> (Role, bool) {
    (if listed { Role::Admin } else { asked.role() }, listed)
}

/// What a successful login does about a listed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLogin {
    /// Nothing: not listed, held by another account, revoked, or already an admin.
    Nothing,
    /// Listed and never reserved (the account had it before it was listed, or before
    /// reservations existed): take the reservation, then decide again with it.
    Claim,
    /// The account holds the reservation and was never demoted: make it an admin.
    Promote,
}

pub fn on_login(listed: bool, user: Uuid, role: Role, held: Option<Reservation>) -> OnLogin {
    match held {
        _ if !listed => OnLogin::Nothing,
        None => OnLogin::Claim,
        Some(r) if r.holder == user && !r.revoked && role != Role::Admin => OnLogin::Promote,
        Some(_) => OnLogin::Nothing,
    }
}

/// Why an email change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailChange {
    /// The new address is listed (reserved for its bootstrap admin): 422 on `email`.
    TargetReserved,
    /// The current address is listed: it stays with this account (409).
    MovingOff,
}

/// Whether an account on `current` may move to `target` (normalised comparison: a change of
/// case only is always allowed).
pub fn email_change(
    admins: &AdminEmails,
    current: &Email,
    target: &Email,
) -> Result<(), EmailChange> {
    if current.normalized() == target.normalized() {
        Ok(())
    } else if admins.lists(current) {
        Err(EmailChange::MovingOff)
    } else if admins.lists(target) {
        Err(EmailChange::TargetReserved)
    } else {
        Ok(())
    }
}

/// True when giving `role` to a reservation's holder revokes its bootstrap.
pub fn revokes_bootstrap(role: Role) -> bool {
    role != Role::Admin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn admin_emails_match_case_insensitively() {
        let list = AdminEmails::parse(" Boss@Example.com , ,other@example.com");
        assert!(list.lists(&email("boss@EXAMPLE.com")));
        assert!(list.lists(&email("other@example.com")));
        assert!(!list.lists(&email("x@example.com")));
        assert!(!AdminEmails::parse("").lists(&email("x@example.com")));
    }

    #[test]
    fn a_listed_registration_is_an_admin_taking_the_reservation() {
        let buyer = RegistrationRole::parse(None).unwrap();
        assert_eq!(registration(true, buyer), (Role::Admin, true));
        assert_eq!(registration(false, buyer), (Role::Buyer, false));
    }

    #[test]
    fn only_the_holder_never_demoted_is_promoted_at_login() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let held = |holder, revoked| Some(Reservation { holder, revoked });
        for (listed, role, reservation, expected) in [
            (true, Role::Buyer, None, OnLogin::Claim),
            (true, Role::Admin, None, OnLogin::Claim),
            (true, Role::Buyer, held(me, false), OnLogin::Promote),
            (true, Role::Admin, held(me, false), OnLogin::Nothing),
            (true, Role::Buyer, held(me, true), OnLogin::Nothing),
            (true, Role::Buyer, held(other, false), OnLogin::Nothing),
            (false, Role::Buyer, None, OnLogin::Nothing),
        ] {
            let got = on_login(listed, me, role, reservation);
            assert_eq!(got, expected, "{listed} {role} {reservation:?}");
        }
    }

    #[test]
    fn nobody_moves_onto_or_off_a_listed_address() {
        let list = AdminEmails::parse("boss@example.com");
        let (boss, ann) = ("boss@example.com", "ann@example.com");
        for (current, target, expected) in [
            (boss, ann, Err(EmailChange::MovingOff)),
            (ann, boss, Err(EmailChange::TargetReserved)),
            (boss, "BOSS@example.com", Ok(())),
            (ann, "bob@example.com", Ok(())),
        ] {
            let got = email_change(&list, &email(current), &email(target));
            assert_eq!(got, expected, "{current} -> {target}");
        }
    }

    #[test]
    fn any_role_but_admin_revokes_the_bootstrap() {
        assert!(revokes_bootstrap(Role::Buyer) && revokes_bootstrap(Role::Carrier));
        assert!(!revokes_bootstrap(Role::Admin));
    }
}
