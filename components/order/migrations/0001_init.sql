-- Order service schema. Every physical order database (shard) has the same schema; which
-- virtual shards a database holds is decided by the `shard_map` variable, and each row
-- carries its virtual shard so whole virtual shards can be copied to another database.

create table orders (
    -- `o` + virtual shard (2 hex) + UUID v7 (32 hex); see src/domain/shard.rs.
    id text primary key,
    vshard smallint not null check (vshard between 0 and 63),
    buyer_id uuid not null,
    status text not null
        check (status in ('confirmed', 'shipped', 'delivered', 'cancelled', 'returned')),
    currency text not null,
    total_cents bigint not null check (total_cents >= 0),
    shipping_address jsonb not null,
    -- The product service's reservation holding this order's stock (= the order id).
    reservation_id text not null,
    -- Set by the outbox relay once the delivery service has created the shipment.
    shipment_id uuid,
    idempotency_key text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null default now()
);

-- GET /api/orders: a buyer's orders, newest first (keyset on id, which sorts by time).
create index orders_buyer_id_idx on orders (buyer_id, id desc);

create table order_items (
    order_id text not null references orders (id),
    line_no integer not null,
    product_id uuid not null,
    title text not null,
    quantity integer not null check (quantity > 0),
    unit_price_cents bigint not null check (unit_price_cents >= 0),
    currency text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (order_id, line_no)
);

-- What happened to an order, for support: one row per state change or notable event.
create table order_history (
    id bigserial primary key,
    order_id text not null references orders (id),
    -- placed | shipment_requested | cancelled | stock_released | shipped | delivered | returned
    event text not null,
    from_status text,
    to_status text not null,
    -- Where the change came from: buyer, admin, delivery, relay.
    actor text not null,
    detail jsonb not null default '{}'::jsonb,
    -- When it happened (the delivery service's occurred_at for delivery updates).
    occurred_at timestamptz not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- "What happened to this order": history of one order in recorded order.
create index order_history_order_id_idx on order_history (order_id, id);

-- Idempotency keys of POST /api/orders, scoped per buyer. A row is written (and committed)
-- `pending` before stock is reserved, so a crashed attempt leaves a trace the relay can clean
-- up; it becomes `completed` in the same transaction that stores the order.
create table idempotency_keys (
    buyer_id uuid not null,
    -- The buyer's virtual shard: moving a virtual shard to another database moves its rows.
    vshard smallint not null check (vshard between 0 and 63),
    key text not null,
    -- SHA-256 of the canonical request: the same key with another body is a 422.
    request_hash text not null,
    -- The order id of this attempt (also the reservation id sent to the product service).
    order_id text not null,
    state text not null check (state in ('pending', 'completed')),
    response_status integer,
    response_body jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (buyer_id, key)
);

-- Relay: pending attempts nobody finished (state = 'pending' and updated_at older than 30 s).
create index idempotency_keys_pending_idx on idempotency_keys (updated_at)
    where state = 'pending';

-- Calls to other services that must eventually happen (transactional outbox).
create table outbox (
    id bigserial primary key,
    -- The order id (or, for the release of an attempt that never became an order, the
    -- attempt's order id, which is its reservation id).
    order_id text not null,
    vshard smallint not null check (vshard between 0 and 63),
    -- create_shipment | release_reservation
    kind text not null check (kind in ('create_shipment', 'release_reservation')),
    payload jsonb not null default '{}'::jsonb,
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- Relay: due, undelivered rows in id order (claimed with `for update skip locked`).
create index outbox_due_idx on outbox (next_attempt_at, id) where delivered_at is null;
-- Relay right after a commit: the undelivered rows of one order.
create index outbox_order_id_idx on outbox (order_id) where delivered_at is null;
