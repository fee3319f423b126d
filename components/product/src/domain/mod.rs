//! The product service's rules as plain Rust (no I/O): every value past a handler was built
//! by a parser here, so an invalid title, price, search or reservation cannot reach the
//! database. Errors are domain values; `crate::error` turns them into answers.

pub mod product;
pub mod read_model;
pub mod reservation;
pub mod search;

use marketplace_shared::FieldErrors;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use product::{NewProduct, ProductInput, ProductPatch};
pub use read_model::{Document, Source};
pub use reservation::{ReservationId, ReservationRequest};
pub use search::{Cursor, Search, Sort};

/// Who may see or change what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Anonymous,
    /// A signed-in user; `admin` is true for the admin role.
    User {
        id: Uuid,
        admin: bool,
    },
}

impl Actor {
    /// True when this actor may see an archived product and change the product.
    pub fn owns_or_admin(&self, seller_id: Uuid) -> bool {
        matches!(*self, Actor::User { id, admin } if admin || id == seller_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Archived,
}

/// A product as the contract shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: Uuid,
    pub seller_id: Uuid,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i64,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub status: Status,
    pub created_at: String,
    pub updated_at: String,
}

/// Why a product cannot be read or changed by an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It does not exist, or the actor may not know it does (archived): 404.
    Unknown,
    /// Someone else's product: 403.
    NotOwner,
    /// Archived products cannot be changed: 409.
    Archived,
}

impl Product {
    /// Whether `actor` may read the product (archived ones only by their seller and admins).
    pub fn visible_to(&self, actor: &Actor) -> bool {
        self.status == Status::Active || actor.owns_or_admin(self.seller_id)
    }

    /// Whether `actor` may change the product (`archive`: archiving again is a no-op, so
    /// an archived product may be archived; any other change of it is refused).
    pub fn changeable_by(&self, actor: &Actor, archive: bool) -> Result<(), Access> {
        if !self.visible_to(actor) {
            Err(Access::Unknown)
        } else if !actor.owns_or_admin(self.seller_id) {
            Err(Access::NotOwner)
        } else if self.status == Status::Archived && !archive {
            Err(Access::Archived)
        } else {
            Ok(())
        }
    }
}

fn has_control(s: &str, allow_newlines: bool) -> bool {
    s.chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
}

/// `Ok` when no field was named.
fn checked(errors: FieldErrors) -> Result<(), FieldErrors> {
    errors.is_empty().then_some(()).ok_or(errors)
}

#[cfg(test)]
fn fixture(id: Uuid, stock: i64, status: Status) -> Product {
    Product {
        id,
        seller_id: Uuid::nil(),
        title: format!("p{id}"),
        description: String::new(),
        category: "c".into(),
        price_cents: 5,
        currency: "EUR".into(),
        stock,
        attributes: Default::default(),
        status,
        created_at: String::new(),
        updated_at: String::new(),
    }
}
