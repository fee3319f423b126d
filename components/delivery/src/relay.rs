//! The outbox relay: reports the order service has not acknowledged yet are sent right after
//! their event is recorded ([`deliver_now`]) and resent by [`run`]
//! (`POST /internal/deliveries/outbox/relay`, the relay CronJob) until acknowledged.

use serde::Serialize;
use uuid::Uuid;

use crate::clients::{Delivery, send_report};
use crate::config::Config;
use crate::domain::shard::{SHARDS, label};
use crate::error::{Error, Result};
use crate::store::kv::Shards;
use crate::store::{self, Report, Shipment};

/// Queue slots one relay run reads per label.
const RELAY_BATCH: i64 = 100;

/// What one relay run did (its response body).
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub attempted: u32,
    pub delivered: u32,
    pub pending_shipments: u32,
}

/// The first attempt at a report, right after its event is recorded. Failure is fine: the
/// report stays pending and the relay retries it.
pub async fn deliver_now<S: Shards>(
    cfg: &Config,
    shards: &S,
    s: &Shipment,
    report: &Report,
    slot: i64,
) {
    let id = s.record.id;
    match send_report(cfg, &s.record.order_id, id, report).await {
        Delivery::Done => {
            if let Err(e) = store::acknowledge(shards, id, &report.event_id, Some(slot)) {
                eprintln!(
                    "report of {id} delivered but not acknowledged (the relay will resend): {e:?}"
                );
            }
        }
        Delivery::Retry => {
            // The queue slot written before the commit may already have been consumed by a
            // relay run that saw no report yet: queue the shipment again.
            if let Err(e) = store::requeue(shards, id) {
                eprintln!("could not requeue the report of {id}: {e:?}");
            }
        }
    }
}

/// One relay run over every label's queue. A label that fails is skipped (the others still
/// run) and the run answers 503 naming the first one.
pub async fn run<S: Shards>(cfg: &Config, shards: &S) -> Result<Stats> {
    let mut stats = Stats::default();
    let mut failed = None;
    for shard in 0..SHARDS {
        if let Err(e) = run_label(cfg, shards, shard, &mut stats).await {
            eprintln!("relay: {} skipped: {e:?}", label(shard));
            failed.get_or_insert(shard);
        }
    }
    match failed {
        Some(shard) => Err(Error::Store {
            label: label(shard),
            cause: "relay could not finish".into(),
        }),
        None => Ok(stats),
    }
}

async fn run_label<S: Shards>(
    cfg: &Config,
    shards: &S,
    shard: usize,
    stats: &mut Stats,
) -> Result<()> {
    let window = store::outbox_window(shards, shard, RELAY_BATCH)?;
    let mut still_pending: Vec<Uuid> = Vec::new();
    for id in &window.shipments {
        let Some(s) = store::load(shards, *id)? else {
            continue;
        };
        let mut left = false;
        for report in &s.state.reports {
            stats.attempted += 1;
            match send_report(cfg, &s.record.order_id, *id, report).await {
                Delivery::Done => {
                    store::acknowledge(shards, *id, &report.event_id, None)?;
                    stats.delivered += 1;
                }
                Delivery::Retry => left = true,
            }
        }
        if left {
            stats.pending_shipments += 1;
            still_pending.push(*id);
        }
    }
    store::outbox_advance(shards, &window, &still_pending)
}
