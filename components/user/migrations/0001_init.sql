-- Accounts. A deleted account keeps its row, so orders can still refer to its id, but its
-- personal data (email, display name) and its password hash are erased.
create table users (
    id uuid primary key,
    -- as the user wrote it, trimmed; null once the account is deleted
    email text,
    -- trimmed and lowercased by the service (not by `lower()`, whose result depends on the
    -- database's locale); the form emails are compared and made unique in
    email_normalized text,
    display_name text,
    role text not null check (role in ('buyer', 'seller', 'carrier', 'admin')),
    -- Argon2id PHC string (algorithm, parameters and salt included)
    password_hash text,
    deleted_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint users_live_or_erased check (
        (deleted_at is null and email is not null and email_normalized is not null
            and display_name is not null and password_hash is not null)
        or (deleted_at is not null and email is null and email_normalized is null
            and display_name is null and password_hash is null)
    )
);

-- One live account per email. Used by login and registration
-- (`select ... from users where email_normalized = $1 and deleted_at is null`), and it is
-- what makes two simultaneous registrations of one email give one row and one 23505
-- (mapped to 409 by its name). Deleted accounts are outside it, so their email is free.
create unique index users_email_normalized_key on users (email_normalized)
    where deleted_at is null;

-- One login: the refresh tokens issued by rotating from its first token share it, and
-- revoking it ends them all (logout, reuse of a spent token, password change, deletion).
create table refresh_families (
    id uuid primary key,
    user_id uuid not null references users (id),
    revoked_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- Revoking every login of a user on password change and deletion
-- (`update refresh_families set revoked_at = now() where user_id = $1 and revoked_at is null`).
create index refresh_families_live_by_user on refresh_families (user_id)
    where revoked_at is null;

-- Refresh tokens, stored only as their SHA-256 hash (the primary key: rotation and logout
-- look tokens up by it).
create table refresh_tokens (
    token_hash bytea primary key check (octet_length(token_hash) = 32),
    family_id uuid not null references refresh_families (id),
    expires_at timestamptz not null,
    -- set when the token is rotated; presenting it again is reuse
    spent_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
