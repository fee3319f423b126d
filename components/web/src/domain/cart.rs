//! The cart: product ids and quantities, kept server-side per session (prices, titles and
//! stock are read from the product service when shown; the order service decides at checkout).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// At most this many distinct products (an order carries at most 100 lines).
pub const MAX_LINES: usize = 100;
/// At most this many units of one product in a cart.
pub const MAX_QUANTITY: u32 = 999;

/// A quantity of one product: 1..=[`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    /// Parses what a quantity field sent (surrounding spaces allowed).
    pub fn parse(raw: &str) -> Result<Self, CartError> {
        match raw.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_QUANTITY).contains(&n) => Ok(Self(n)),
            _ => Err(CartError::BadQuantity),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartError {
    BadQuantity,
    TooManyLines,
    NotInCart,
}

impl CartError {
    /// What the person is told.
    pub fn message(self) -> String {
        match self {
            CartError::BadQuantity => {
                format!("The quantity must be a whole number from 1 to {MAX_QUANTITY}.")
            }
            CartError::TooManyLines => {
                format!("A cart holds at most {MAX_LINES} different products.")
            }
            CartError::NotInCart => "That product is not in your cart.".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub product_id: Uuid,
    pub quantity: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    lines: Vec<CartLine>,
}

impl Cart {
    pub fn lines(&self) -> &[CartLine] {
        &self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Units over all lines (the number next to "Cart").
    pub fn units(&self) -> u32 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// Adds units; a product already in the cart gets them added to its line, up to the cap.
    pub fn add(&mut self, product_id: Uuid, quantity: Quantity) -> Result<(), CartError> {
        if let Some(line) = self.lines.iter_mut().find(|l| l.product_id == product_id) {
            let total = line.quantity + quantity.get();
            if total > MAX_QUANTITY {
                return Err(CartError::BadQuantity);
            }
            line.quantity = total;
            return Ok(());
        }
        if self.lines.len() >= MAX_LINES {
            return Err(CartError::TooManyLines);
        }
        self.lines.push(CartLine {
            product_id,
            quantity: quantity.get(),
        });
        Ok(())
    }

    pub fn set(&mut self, product_id: Uuid, quantity: Quantity) -> Result<(), CartError> {
        let line = self
            .lines
            .iter_mut()
            .find(|l| l.product_id == product_id)
            .ok_or(CartError::NotInCart)?;
        line.quantity = quantity.get();
        Ok(())
    }

    /// Removes a line; removing what is not there is not an error (a repeated form post).
    pub fn remove(&mut self, product_id: Uuid) {
        self.lines.retain(|l| l.product_id != product_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: &str) -> Quantity {
        Quantity::parse(n).unwrap()
    }

    fn line(product_id: Uuid, quantity: u32) -> CartLine {
        CartLine {
            product_id,
            quantity,
        }
    }

    #[test]
    fn quantities_are_whole_numbers_from_one_to_the_cap() {
        assert_eq!((q(" 3 ").get(), q("999").get()), (3, 999));
        for bad in ["0", "-1", "1.5", "", "abc", "1000"] {
            assert_eq!(Quantity::parse(bad), Err(CartError::BadQuantity), "{bad}");
        }
    }

    #[test]
    fn adding_a_product_again_adds_to_its_line_up_to_the_cap() {
        let p = Uuid::now_v7();
        let mut cart = Cart::default();
        cart.add(p, q("2")).unwrap();
        cart.add(p, q("3")).unwrap();
        assert_eq!(cart.lines(), [line(p, 5)]);
        assert_eq!(cart.units(), 5);
        cart.add(p, q("994")).unwrap();
        assert_eq!(cart.add(p, q("1")), Err(CartError::BadQuantity));
        assert_eq!(cart.lines(), [line(p, 999)]);
    }

    #[test]
    fn a_cart_holds_at_most_a_hundred_products() {
        let mut cart = Cart::default();
        for _ in 0..MAX_LINES {
            cart.add(Uuid::now_v7(), q("1")).unwrap();
        }
        let one_more = cart.add(Uuid::now_v7(), q("1"));
        assert_eq!(one_more, Err(CartError::TooManyLines));
    }

    #[test]
    fn changing_and_removing_lines() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut cart = Cart::default();
        cart.add(a, q("1")).unwrap();
        cart.add(b, q("1")).unwrap();
        cart.set(a, q("7")).unwrap();
        assert_eq!(cart.set(Uuid::now_v7(), q("1")), Err(CartError::NotInCart));
        cart.remove(b);
        cart.remove(b);
        assert_eq!(cart.lines(), [line(a, 7)]);
    }
}
