//! Types generated from `wit/marketplace.wit` (world `service-types`).
//!
//! Only types are used: the `tokens` functions are implemented in Rust in [`crate::tokens`],
//! never imported from the host, so a component built with this crate imports nothing from
//! the `marketplace:` package.

#![allow(missing_docs, clippy::all)]

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "service-types",
        additional_derives: [serde::Serialize, serde::Deserialize],
        generate_all,
        generate_unused_types: true,
    });
}

pub use bindings::marketplace::shared::payloads::{
    DeliveryStatusUpdate, Reservation, ReservationItem, ReservationRequest, ReservedItem,
    ShipmentItem, ShipmentRequest,
};
pub use bindings::marketplace::shared::tokens::{Claims, TokenError};
pub use bindings::marketplace::shared::types::{
    OrderStatus, Role, ShipmentStatus, ShippingAddress,
};

/// The wire names of the WIT enums (the contract's `snake_case` strings).
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The contract's spelling of this value.
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }

            /// Parses the contract's spelling; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some($ty::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names!(Role {
    Buyer => "buyer",
    Seller => "seller",
    Carrier => "carrier",
    Admin => "admin",
    Service => "service",
});

wire_names!(OrderStatus {
    Confirmed => "confirmed",
    Shipped => "shipped",
    Delivered => "delivered",
    Cancelled => "cancelled",
    Returned => "returned",
});

wire_names!(ShipmentStatus {
    Pending => "pending",
    PickedUp => "picked_up",
    InTransit => "in_transit",
    OutForDelivery => "out_for_delivery",
    FailedAttempt => "failed_attempt",
    Delivered => "delivered",
    Returned => "returned",
    Cancelled => "cancelled",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in ShipmentStatus::ALL {
            assert_eq!(ShipmentStatus::parse(s.as_str()), Some(*s));
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(*r));
        }
        assert_eq!(OrderStatus::parse("Confirmed"), None);
    }

    #[test]
    fn generated_records_use_contract_field_names() {
        let json = serde_json::json!({
            "name": "Ada", "line1": "1 Main St", "line2": null,
            "city": "Paris", "postal_code": "75001", "country": "FR"
        });
        let a: ShippingAddress = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(a.postal_code, "75001");
        assert_eq!(serde_json::to_value(&a).unwrap(), json);
    }
}
