//! A seller's sales: this database's part of `GET /api/orders/sales` (`domain::sales`).

use spin_sdk::pg4::ParameterValue;

use super::orders::ts;
use super::{Db, get, get_order_id, get_status, text};
use crate::domain::sales::{Sale, SalesQuery, ShipTo};
use crate::error::Error;

impl Db {
    /// At most `limit` lines after the cursor, in the list's total order. One range scan of
    /// `order_items_seller_sales_idx` (migration 0004) that stops after `limit` rows; the
    /// status filter is applied to the joined order, so a rare status reads further. Order
    /// ids compare bytewise (`collate "C"`, as the index does), the order the merge uses.
    pub fn sales_page(&self, q: &SalesQuery, limit: u32) -> Result<Vec<Sale>, Error> {
        let mut sql = String::from(concat!(
            "select i.order_id, i.line_no, ",
            ts!("i.placed_at"),
            ", i.product_id, i.title, i.quantity, i.unit_price_cents, i.currency, o.status, \
             o.shipment_id, o.tracking_number, o.shipping_address->>'city', \
             o.shipping_address->>'postal_code', o.shipping_address->>'country' \
             from order_items i join orders o on o.id = i.order_id \
             where i.seller_id = $1"
        ));
        let mut params: Vec<ParameterValue> = vec![q.seller.into()];
        if let Some(status) = q.status {
            params.push(text(status.as_str()));
            sql.push_str(&format!(" and o.status = ${}", params.len()));
        }
        if let Some(after) = &q.after {
            // Strictly after (placed_at, order_id, line_no) in (desc, desc, asc) order. The
            // first conjunct is the index's range bound; the rest only sorts out lines of the
            // cursor's own millisecond.
            params.push(text(&after.placed_at));
            let at = params.len();
            params.push(text(&after.order_id.to_string()));
            let order = params.len();
            params.push(ParameterValue::Int32(after.line_no));
            let line = params.len();
            sql.push_str(&format!(
                " and i.placed_at <= ${at}::text::timestamptz \
                 and (i.placed_at < ${at}::text::timestamptz or i.order_id collate \"C\" < ${order} \
                 or (i.order_id = ${order} and i.line_no > ${line}))"
            ));
        }
        params.push(ParameterValue::Int64(i64::from(limit)));
        sql.push_str(&format!(
            " order by i.placed_at desc, i.order_id collate \"C\" desc, i.line_no limit ${}",
            params.len()
        ));
        let rows = self.query(&sql, &params)?;
        rows.rows
            .iter()
            .map(|r| {
                Ok(Sale {
                    order_id: get_order_id(r, 0)?,
                    line_no: get(r, 1)?,
                    placed_at: get(r, 2)?,
                    product_id: get(r, 3)?,
                    title: get(r, 4)?,
                    quantity: get(r, 5)?,
                    unit_price_cents: get(r, 6)?,
                    currency: get(r, 7)?,
                    order_status: get_status(r, 8)?,
                    shipment_id: get(r, 9)?,
                    tracking_number: get(r, 10)?,
                    ship_to: ShipTo {
                        city: get(r, 11)?,
                        postal_code: get(r, 12)?,
                        country: get(r, 13)?,
                    },
                })
            })
            .collect()
    }
}
