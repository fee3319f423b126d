-- Retention (components/user/src/store.rs, `purge_expired_logins`, run after each login):
-- refresh tokens expired more than 30 days ago are deleted oldest first, then logins
-- (families) older than that with no token left.
create index refresh_tokens_expires_at_idx on refresh_tokens (expires_at);
-- Also what the "no token left" check of a family looks up.
create index refresh_tokens_family_id_idx on refresh_tokens (family_id);
create index refresh_families_created_at_idx on refresh_families (created_at);
