-- Product catalog (system of record), stock reservations, and the indexes of every
-- query shape the service sends (components/product/src/sql.rs). Searches always filter
-- `status = 'active'`, so their indexes are partial on it: archived products cost nothing.

-- Trigram similarity (typo-tolerant search); a trusted extension since PostgreSQL 13.
create extension if not exists pg_trgm;

create table products (
    id uuid primary key,
    seller_id uuid not null,
    title text not null check (char_length(title) between 1 and 200),
    description text not null check (char_length(description) <= 10000),
    category text not null check (char_length(category) between 1 and 100),
    price_cents bigint not null check (price_cents between 0 and 1000000000),
    currency text not null check (currency ~ '^[A-Z]{3}$'),
    -- Never negative: the last line of defence against overselling.
    stock bigint not null check (stock >= 0),
    attributes jsonb not null default '{}' check (jsonb_typeof(attributes) = 'object'),
    status text not null default 'active' check (status in ('active', 'archived')),
    -- Bumped by every write; the key-value read model only ever moves to a higher version.
    version bigint not null default 1,
    -- Title weighs more than description in the ranking.
    search_tsv tsvector generated always as (
        setweight(to_tsvector('english', title), 'A')
            || setweight(to_tsvector('english', description), 'B')
    ) stored,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- search: `search_tsv @@ websearch_to_tsquery(...)` (q, full text).
create index products_search_tsv on products using gin (search_tsv) where status = 'active';

-- search: `$q <% title` (q, typo tolerance by word similarity).
create index products_title_trgm on products using gin (title gin_trgm_ops)
    where status = 'active';

-- browse: `order by created_at desc, id desc` (sort=newest, the default) and its keyset
-- `(created_at, id) < (...)`, scanned backwards.
create index products_newest on products (created_at, id) where status = 'active';

-- browse: `category = $c order by created_at desc, id desc` (category + newest).
create index products_category_newest on products (category, created_at, id)
    where status = 'active';

-- browse: `order by price_cents [asc|desc], id [asc|desc]` (sort=price_asc / price_desc),
-- also min_price / max_price ranges.
create index products_price on products (price_cents, id) where status = 'active';

-- browse: `category = $c order by price_cents, id` (category + price sorts).
create index products_category_price on products (category, price_cents, id)
    where status = 'active';

-- browse: `seller_id = $s order by created_at desc, id desc` (a seller's shop page).
create index products_seller_newest on products (seller_id, created_at, id)
    where status = 'active';

-- Stock reservations of the order service, keyed by the caller's reservation id.
create table reservations (
    reservation_id text primary key check (char_length(reservation_id) between 1 and 255),
    -- The 201 body of the first request, replayed verbatim when the id is repeated.
    response jsonb not null default '{}',
    -- `[{product_id, quantity}]` summed per product: exactly what a release gives back.
    quantities jsonb not null default '[]',
    released_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
