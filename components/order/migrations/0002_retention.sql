-- Retention (the relay's purge, components/order/src/relay.rs): delivered outbox rows and
-- completed idempotency keys older than their retention are deleted in bounded batches,
-- oldest first; these partial indexes make each batch a short index range scan.
create index outbox_delivered_idx on outbox (delivered_at) where delivered_at is not null;
create index idempotency_keys_completed_idx on idempotency_keys (updated_at)
    where state = 'completed';
