//! Placing an order exactly once per (buyer, idempotency key): reserve → store → ship.

use std::time::Duration;

use uuid::Uuid;

use crate::clients::{self, ReserveError};
use crate::config::Config;
use crate::domain::key::{self, Decision, IdempotencyKey, Replay, WAIT_ROUNDS};
use crate::domain::order::{self, NewOrder, Order};
use crate::domain::shard::{OrderId, VShard};
use crate::error::Error;
use crate::relay;
use crate::store::Db;

/// The answer to `POST /api/orders`.
pub enum Placed {
    New(Box<Order>),
    Replayed(Replay),
}

/// What one look at the key row decided.
enum Step {
    Done(Result<Placed, Error>),
    /// The row is gone (its attempt gave up and forgot it): claim it again.
    Again,
    /// Another request is between its claim and its lock.
    Wait,
}

/// Places an order exactly once per (buyer, idempotency key):
/// 1. The key row is inserted `pending` with a fresh order id and committed: a crash from here
///    on leaves a trace the relay cleans up (it releases reservation `order id`).
/// 2. The row is locked for the rest of the attempt: a concurrent request with the same key
///    waits on the lock, then replays the stored response.
/// 3. Stock is reserved with reservation id = order id (idempotent at the product service).
/// 4. Order, lines, history, `create_shipment` row and stored response commit in one statement;
///    then the shipment is requested (`relay::ship_placed`); the answer is what was written.
///    A failure after step 3 releases the reservation (or queues its release).
pub async fn place(
    cfg: &Config,
    buyer: Uuid,
    key: &IdempotencyKey,
    new: &NewOrder,
) -> Result<Placed, Error> {
    let vshard = VShard::of_buyer(buyer);
    let db = Db::for_vshard(cfg, vshard)?;
    let hash = new.fingerprint();
    let mut waits = 0;
    for _ in 0..WAIT_ROUNDS * 2 {
        let candidate = OrderId::generate(vshard);
        db.claim_key(buyer, key, &hash, &candidate)?;
        // A reservation made in this round whose order was not committed (released below).
        let mut outstanding = None;
        let step = db
            .transaction(async |db| {
                let decision = match db.lock_key(buyer, key)? {
                    Some(row) => key::decide(row, &candidate, &hash),
                    None => return Ok(Step::Again),
                };
                match decision {
                    Decision::Replay(replay) => Ok(Step::Done(Ok(Placed::Replayed(replay)))),
                    Decision::OtherBody => Err(Error::KeyReused),
                    Decision::Wait => Ok(Step::Wait),
                    Decision::Proceed { order_id, takeover } => {
                        if takeover {
                            db.touch_key(buyer, key)?;
                        }
                        let placed = attempt(cfg, db, buyer, key, new, order_id, &mut outstanding);
                        placed.await.map(Step::Done)
                    }
                }
            })
            .await;
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                // The key row is still `pending` (committed at claim time): release now; if
                // even that fails, the relay's sweep releases it once the row is abandoned.
                if let Some(id) = outstanding
                    && clients::release(cfg, &id).await.is_ok()
                {
                    let _ = db.delete_key(buyer, key.as_str());
                }
                return Err(e);
            }
        };
        match step {
            Step::Done(Ok(Placed::New(order))) => {
                let shipped = relay::ship_placed(cfg, &db, key, &order).await;
                return Ok(Placed::New(shipped.map_or(order, Box::new)));
            }
            Step::Done(done) => return done,
            Step::Again => {}
            Step::Wait => {
                waits += 1;
                if waits > WAIT_ROUNDS {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Err(Error::KeyBusy)
}

/// Steps 3 and 4, in the transaction holding the key row. Outer `Err`: roll back; inner: the
/// refusal to answer once the transaction (which forgot the key) commits.
async fn attempt(
    cfg: &Config,
    db: &Db,
    buyer: Uuid,
    key: &IdempotencyKey,
    new: &NewOrder,
    order_id: OrderId,
    outstanding: &mut Option<OrderId>,
) -> Result<Result<Placed, Error>, Error> {
    let (refusal, maybe_reserved) = match clients::reserve(cfg, &order_id, &new.items).await {
        Ok(reservation) => match order::price(&new.items, &reservation.items) {
            Ok(priced) => {
                *outstanding = Some(order_id);
                let order = Order::placed(order_id, buyer, priced, new.shipping_address.clone());
                db.insert_order(&order, key)?;
                return Ok(Ok(Placed::New(Box::new(order))));
            }
            Err(e) => (e.into(), true),
        },
        Err(ReserveError::Refused(p)) => (p.into(), false),
        // The reservation may exist (lost answer).
        Err(ReserveError::Unknown(cause)) => (Error::unavailable("product-service", cause), true),
    };
    // No order: forget the key (so it can be used again) and release a reservation that may
    // exist now or, failing that, queue its release in the transaction that forgets the key.
    if maybe_reserved && let Err(e) = clients::release(cfg, &order_id).await {
        eprintln!("order: releasing {order_id} failed, queued for the relay: {e}");
        db.enqueue_release(&order_id)?;
    }
    db.delete_key(buyer, key.as_str())?;
    Ok(Err(refusal))
}
