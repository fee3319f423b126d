-- Sellers see what they sold (API v1.1, `GET /api/orders/sales`). Orders are sharded by buyer,
-- so a seller's lines are on every database; the list asks each database for a page of the
-- seller's lines after a cursor, in one total order (placed_at desc, order_id desc,
-- line_no asc), and merges the pages (docs/sharding.md, "A seller's sales").

-- The product's seller, from the product service's reservation answer at placement. Null for
-- lines placed before this migration (the reservation did not name it then): such lines are
-- in no seller's list.
alter table order_items add column seller_id uuid;
-- The order's placement time (= orders.created_at), copied onto its lines so that one index
-- serves the seller's query in its sort order without visiting the orders table first.
alter table order_items add column placed_at timestamptz;
update order_items i set placed_at = o.created_at from orders o where o.id = i.order_id;

-- GET /api/orders/sales: `where seller_id = $1 [and placed_at <= cursor] order by placed_at
-- desc, order_id desc, line_no limit n` is a range scan of this index that stops after n rows,
-- so a page costs O(limit) per database however many lines the seller has. Order ids compare
-- bytewise (`collate "C"`), the order in which the service merges the databases' pages.
create index order_items_seller_sales_idx
    on order_items (seller_id, placed_at desc, order_id collate "C" desc, line_no)
    where seller_id is not null;

-- The shipment's tracking number, from the delivery service's answer when the shipment is
-- created (null until then), shown to the seller with each sale.
alter table orders add column tracking_number text;
