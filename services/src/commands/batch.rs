//! Group commit for orders. Orders for the products other orders of this process are buying
//! right now (a flash sale) do not each read, decide and append in turn: they queue on their
//! product's stripe, and whoever holds the stripe takes every order queued there, reads once,
//! decides them one after the other on that read (each order sees the stock the ones before it
//! left; a refused order takes nothing), and appends all of them in one guarded append. Each
//! request then gets its own answer: its ids and the versions its own events produced, or its
//! own refusal. A conflict (another process moved the data) re-reads and decides the whole
//! group again, as a single command would.
//!
//! The group is committed by a task of its own, not by the request that happened to start it,
//! so a client that disconnects cannot leave the others without their answers. Orders under an
//! `Idempotency-Key` are not grouped (their answer is kept with their own append).

use super::{plans, CommandError, CommandService, HotEntities, Written};
use ordershop_domain::decide::OrderDraft;
use ordershop_domain::{DomainError, EntityKind};
use ordershop_eventstore::{AppendError, CommandStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Most requests committed in one append: bounds the append's size and the time the Function
/// holds Redis; more queued requests go in the next group.
const MAX_GROUP: usize = 128;

/// One request's orders, waiting for its group.
pub(super) struct Queued {
    items: Vec<(Uuid, OrderDraft)>,
    request_id: Option<String>,
    reply: oneshot::Sender<Result<Written, CommandError>>,
}

/// The waiting orders of one process, per stripe (products share stripes by hash, as in
/// [`HotEntities`]), and whether a task is committing a stripe's orders now. The flag is only
/// ever tried, never waited on: a task that finds it taken leaves its order to the holder, who
/// looks at the queue again after letting go.
#[derive(Clone)]
pub struct OrderGroups {
    queues: Arc<Vec<Mutex<Vec<Queued>>>>,
    committing: Arc<Vec<AtomicBool>>,
}

impl Default for OrderGroups {
    fn default() -> Self {
        Self {
            queues: Arc::new(
                (0..HotEntities::STRIPES)
                    .map(|_| Mutex::default())
                    .collect(),
            ),
            committing: Arc::new(
                (0..HotEntities::STRIPES)
                    .map(|_| AtomicBool::new(false))
                    .collect(),
            ),
        }
    }
}

impl OrderGroups {
    fn queue(&self, stripe: usize) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        // A poisoned queue still holds valid requests: nothing panics while holding it.
        self.queues[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: CommandStore> CommandService<S> {
    /// Creates orders (one per draft, all or none for this request), committed together with
    /// the other orders this process has queued on the same product.
    pub async fn create_orders(&self, drafts: Vec<OrderDraft>) -> Result<Written, CommandError> {
        // Under an Idempotency-Key (or with nothing to order) the order is a command of its own.
        let stripe = match drafts.first().and_then(|d| d.product_ids.first()) {
            Some(product) if self.idempotency.is_none() => {
                HotEntities::stripe(EntityKind::Product, product.0)
            }
            _ => return self.create::<ordershop_domain::Order>(drafts).await,
        };
        let (reply, answer) = oneshot::channel();
        self.groups.queue(stripe).push(Queued {
            items: drafts.into_iter().map(|d| (Uuid::new_v4(), d)).collect(),
            request_id: self.request_id.clone(),
            reply,
        });
        tokio::spawn(self.clone().commit_queued(stripe));
        answer.await.unwrap_or_else(|_| {
            Err(CommandError::Append(AppendError::Protocol(
                "the order's group ended without an answer".to_owned(),
            )))
        })
    }

    /// Commits what is queued on `stripe`, group after group, unless another task holds the
    /// stripe: that one sees what was queued before it lets go (it looks again after).
    async fn commit_queued(self, stripe: usize) {
        loop {
            if self.groups.queue(stripe).is_empty() {
                return;
            }
            let flag = &self.groups.committing[stripe];
            if flag
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return;
            }
            loop {
                let group: Vec<Queued> = {
                    let mut queue = self.groups.queue(stripe);
                    let take = queue.len().min(MAX_GROUP);
                    queue.drain(..take).collect()
                };
                if group.is_empty() {
                    break;
                }
                self.commit_group(group).await;
            }
            flag.store(false, Ordering::Release);
        }
    }

    /// Reads once, decides every request of the group in turn, appends the accepted ones in one
    /// guarded append, and answers each request.
    async fn commit_group(&self, group: Vec<Queued>) {
        let mut retries = self.retry.start(self.metrics.as_deref());
        while retries.next().await.is_some() {
            let requests: Vec<&[(Uuid, OrderDraft)]> =
                group.iter().map(|q| q.items.as_slice()).collect();
            let (mut append, decided) =
                match plans::plan_order_requests(&self.store, &requests).await {
                    Ok(planned) => planned,
                    Err(e) => return answer_all(group, || Err(e.clone())),
                };
            let ranges: Vec<Result<std::ops::Range<usize>, DomainError>> = group
                .iter()
                .zip(decided)
                .map(|(queued, decided)| {
                    decided.map(|changes| {
                        append.changes_for_request(changes, queued.request_id.as_deref())
                    })
                })
                .collect();
            if append.events.is_empty() {
                return answer_each(group, ranges, |_, _| Written::default());
            }
            match self.store.append_guarded(&append).await {
                Ok(appended) => {
                    self.record_appended(&appended, retries.attempts());
                    return answer_each(group, ranges, |queued, range| {
                        Written::of_events(
                            queued.items.iter().map(|(id, _)| *id).collect(),
                            &append.events[range.clone()],
                        )
                    });
                }
                Err(e) if retries.retry_after(&e) => {}
                Err(e) => return answer_all(group, || Err(CommandError::Append(e.clone()))),
            }
        }
        let gave_up = retries.gave_up();
        answer_all(group, || Err(gave_up.clone()));
    }
}

fn answer_all(group: Vec<Queued>, answer: impl Fn() -> Result<Written, CommandError>) {
    for queued in group {
        // A request that went away no longer waits for its answer.
        let _ = queued.reply.send(answer());
    }
}

fn answer_each(
    group: Vec<Queued>,
    ranges: Vec<Result<std::ops::Range<usize>, DomainError>>,
    written: impl Fn(&Queued, &std::ops::Range<usize>) -> Written,
) {
    for (queued, range) in group.into_iter().zip(ranges) {
        let result = match range {
            Ok(range) => Ok(written(&queued, &range)),
            Err(e) => Err(CommandError::Domain(e)),
        };
        let _ = queued.reply.send(result);
    }
}
