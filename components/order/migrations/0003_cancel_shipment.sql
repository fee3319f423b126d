-- Cancellation stops the parcel (API v1.1): a cancel first writes a `cancel_shipment` intent
-- into the outbox and commits it, then asks the delivery service to cancel the shipment, then
-- cancels the order and queues the stock's release. The intent is the trace a crash between
-- those steps leaves: the relay resolves it from the shipment's status (cancelled: finish the
-- cancel; anything else: drop the intent). See components/order/README.md, "Cancel".
alter table outbox drop constraint outbox_kind_check;
alter table outbox add constraint outbox_kind_check
    check (kind in ('create_shipment', 'release_reservation', 'cancel_shipment'));
