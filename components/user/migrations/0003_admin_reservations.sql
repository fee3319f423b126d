-- Bootstrap admin addresses (`admin_emails`) stay with the account that first took one
-- (components/user/src/domain/admin.rs). A row is written when a listed address is first
-- registered (in the registration's transaction) or first logs in; it is never deleted, so
-- the address stays reserved after its account's deletion. The primary key is what makes two
-- simultaneous registrations of a listed address give one admin and one 409
-- (`reserved_admin_emails_pkey`); registration and login look rows up by it.
create table reserved_admin_emails (
    -- trimmed and lowercased by the service, like users.email_normalized
    email_normalized text primary key,
    user_id uuid not null references users (id),
    -- set when an operator gives the holder another role (`PUT /api/users/{id}/role`): from
    -- then on a login no longer makes the holder an admin
    bootstrap_revoked_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- Demotion marks the holder's reservations
-- (`update reserved_admin_emails set bootstrap_revoked_at = now() where user_id = $1 ...`).
create index reserved_admin_emails_user_id_idx on reserved_admin_emails (user_id);
