//! Write coalescing: requests that each need one short transaction are gathered, while the
//! previous transactions run, into one statement and one commit.
//!
//! Under load a commit per request is what a write costs most (the round trip, the
//! statement's start-up, the WAL flush, the context switches on 2 cores); with `lanes`
//! batches in flight, whatever queued meanwhile goes into the next one. A lone request is
//! sent at once, so an idle system pays nothing for this. A batch the database rejects as a
//! statement is run again request by request, so one bad request never fails its neighbours.

use std::{future::Future, sync::Arc};

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{
    error::{Error, Result},
    store::Store,
    tasks::Tasks,
};

/// Requests per batch at most, for the store-backed coalescers: a set-based statement costs
/// little per extra row, and one over-full queue still drains in a few batches.
pub const MAX_BATCH: usize = 256;

type Waiter<Resp> = oneshot::Sender<Result<Resp>>;

pub struct Coalescer<Req, Resp> {
    tx: mpsc::Sender<(Req, Waiter<Resp>)>,
}

impl<Req, Resp> Clone for Coalescer<Req, Resp> {
    fn clone(&self) -> Self {
        Coalescer { tx: self.tx.clone() }
    }
}

impl<Req, Resp> Coalescer<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    /// Starts `lanes` tasks that each run one batch of at most `max_batch` requests at a time.
    /// `run` must answer a batch with one response per request, in order.
    /// The lanes are owned by `tasks` (stopped with the service, or when every handle is dropped).
    pub fn start<F, Fut>(name: &'static str, lanes: usize, max_batch: usize, tasks: &Tasks, run: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<(Req, Waiter<Resp>)>(max_batch * lanes * 4);
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        for _ in 0..lanes.max(1) {
            let rx = rx.clone();
            let run = run.clone();
            // Ends by itself when every handle is dropped (the HTTP server's apps, at a stop):
            // not a failure, so registered as work that ends (a panic is still reported).
            tasks.spawn_once(name, async move {
                while let Some(batch) = next_batch(&rx, max_batch).await {
                    let (reqs, waiters): (Vec<Req>, Vec<Waiter<Resp>>) = batch.into_iter().unzip();
                    for (waiter, answer) in waiters.into_iter().zip(run_batch(name, &*run, reqs).await) {
                        // The caller may have gone (client disconnected); the write stands.
                        let _ = waiter.send(answer);
                    }
                }
            });
        }
        Coalescer { tx }
    }

    /// A coalescer whose batches are messages to the store actor: `message` wraps a batch
    /// (`WriteAlarms`, `RecordViews`), whose handler answers one response per request.
    pub fn to_store<M>(
        name: &'static str,
        lanes: usize,
        store: actix::Addr<Store>,
        tasks: &Tasks,
        message: fn(Vec<Req>) -> M,
    ) -> Self
    where
        M: actix::Message<Result = Result<Vec<Resp>>> + Send + 'static,
        Store: actix::Handler<M>,
    {
        Coalescer::start(name, lanes, MAX_BATCH, tasks, move |batch| {
            let request = store.send(message(batch));
            async move { request.await? }
        })
    }

    /// Queues `req` for the next batch and waits for its own answer.
    pub async fn submit(&self, req: Req) -> Result<Resp> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((req, tx)).await.map_err(|_| Error::StoreGone)?;
        rx.await.map_err(|_| Error::StoreGone)?
    }
}

/// Waits for one request, then takes whatever else is already queued (up to `max`).
async fn next_batch<T>(rx: &Mutex<mpsc::Receiver<T>>, max: usize) -> Option<Vec<T>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut batch = Vec::with_capacity(max.min(64));
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// One answer per request: the batch's, or (when the database refused the batch as a
/// statement) each request's own.
async fn run_batch<Req: Clone, Resp, F, Fut>(name: &str, run: &F, reqs: Vec<Req>) -> Vec<Result<Resp>>
where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Result<Vec<Resp>>>,
{
    let n = reqs.len();
    match run(reqs.clone()).await {
        Ok(resps) if resps.len() == n => resps.into_iter().map(Ok).collect(),
        Ok(resps) => {
            let e = format!("{name}: {} answers for {n} requests", resps.len());
            (0..n).map(|_| Err(Error::Malformed(e.clone()))).collect()
        }
        Err(e) if n > 1 && e.is_statement_error() => {
            log::warn!("{name}: a batch of {n} failed ({e}); running its requests one by one");
            let mut out = Vec::with_capacity(n);
            for req in reqs {
                out.push(run(vec![req]).await.and_then(|mut r| r.pop().ok_or_else(|| Error::Malformed(name.into()))));
            }
            out
        }
        Err(e) => {
            let mut out: Vec<Result<Resp>> = (1..n).map(|_| Err(e.same_kind())).collect();
            out.push(Err(e));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let doubler = Coalescer::start("test", 1, 64, &Tasks::new(), move |reqs: Vec<u32>| {
            c2.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(reqs.into_iter().map(|r| r * 2).collect())
            }
        });
        let answers = futures_util::future::join_all((0..50u32).map(|i| doubler.submit(i)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>();
        assert_eq!(answers.unwrap(), (0..50u32).map(|i| i * 2).collect::<Vec<_>>());
        let n = calls.load(Ordering::SeqCst);
        assert!(n < 50, "50 concurrent requests must not take 50 batches (took {n})");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_request_in_it_with_the_same_kind_of_error() {
        let failing = Coalescer::start("test", 1, 64, &Tasks::new(), |_reqs: Vec<u32>| async {
            Err::<Vec<u32>, _>(Error::DbUnavailable("down".into()))
        });
        let answers = futures_util::future::join_all((0..5u32).map(|i| failing.submit(i))).await;
        assert!(answers.iter().all(|a| matches!(a, Err(Error::DbUnavailable(_)))), "{answers:?}");
    }

    #[tokio::test]
    async fn a_wrong_number_of_answers_is_an_error_not_a_mix_up() {
        let short =
            Coalescer::start("test", 1, 64, &Tasks::new(), |_reqs: Vec<u32>| async { Ok(vec![]) as Result<Vec<u32>> });
        assert!(matches!(short.submit(1).await, Err(Error::Malformed(_))));
    }
}
