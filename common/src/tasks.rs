//! The owner of a service's background tasks: every long-lived loop (the outbox listener,
//! replica persisters, owner-epoch watches, write coalescers, ...) and the one-shot start-up
//! work (migrations, replica restores) is spawned through one [`Tasks`], held by
//! [`crate::service::Core`], so that
//! - a graceful stop ends them all ([`Tasks::shutdown`]: each is cancelled at its next await,
//!   and one that does not end within the grace period is aborted and named; a loop with a
//!   last step to take, such as the cache's hot-copy writer, is told instead and ends itself), and
//! - a loop that fails (panics) or ends while the service still runs is logged at `warn`,
//!   naming it, instead of disappearing silently.
//!
//! The RabbitMQ connection supervisor and every per-connection loop (consumers, the RPC
//! client and server, the relay) are registered too ([`crate::amqp::bus::Bus`]); a replica's
//! re-sync after a (re)subscription runs inside its connection's loop, so a reconnect drops
//! it. Per-request work (a streamed list's producer, an RPC answer) is not registered: it
//! ends with its request or its deadline.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures_util::FutureExt;
use tokio::{runtime::Handle, task::JoinHandle};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    stop: CancellationToken,
    running: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    /// Tasks that panicked, or loops that ended before the stop: each was logged at `warn`.
    failures: AtomicUsize,
}

/// Whether a task ending by itself is expected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lifetime {
    /// Runs until the service stops: ending before is a failure.
    Service,
    /// Start-up work that ends when done.
    Once,
    /// Runs until the service stops, and ends by itself once told to (not cancelled).
    Finishing,
}

impl Tasks {
    pub fn new() -> Self {
        Tasks::default()
    }

    /// A loop meant to run as long as the service, on the current runtime.
    pub fn spawn<F>(&self, name: &'static str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(&Handle::current(), name, work);
    }

    /// A loop meant to run as long as the service, on `runtime` (e.g. the database runtime).
    pub fn spawn_on<F>(&self, runtime: &Handle, name: &'static str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.start(runtime, name, Lifetime::Service, work);
    }

    /// A loop meant to run as long as the service that has a last step to take at a graceful
    /// stop (a final write of what it would have written next): it is handed the stop token
    /// instead of being cancelled, and is aborted only if it has not ended within the grace.
    pub fn spawn_finishing<F, W>(&self, name: &'static str, work: W)
    where
        W: FnOnce(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.inner.stop.child_token();
        self.start(&Handle::current(), name, Lifetime::Finishing, work(stop));
    }

    /// Work that ends by itself when done (a restore, the migrations), on `runtime`; stopped
    /// like the others if the service stops first.
    pub fn spawn_once_on<F>(&self, runtime: &Handle, name: &'static str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.start(runtime, name, Lifetime::Once, work);
    }

    /// [`Tasks::spawn_once_on`] on the current runtime.
    pub fn spawn_once<F>(&self, name: &'static str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_once_on(&Handle::current(), name, work);
    }

    fn start<F>(&self, runtime: &Handle, name: &'static str, lifetime: Lifetime, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = self.inner.clone();
        let stop = self.inner.stop.child_token();
        let task = runtime.spawn(async move {
            let ended = if lifetime == Lifetime::Finishing {
                AssertUnwindSafe(work).catch_unwind().await
            } else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    ended = AssertUnwindSafe(work).catch_unwind() => ended,
                }
            };
            match ended {
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    inner.failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!("background task '{name}' failed: {why}");
                }
                Ok(()) if lifetime != Lifetime::Once && !inner.stop.is_cancelled() => {
                    inner.failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!("background task '{name}' ended while the service still runs");
                }
                Ok(()) => log::debug!("background task '{name}' done"),
            }
        });
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        // Finished one-shots are forgotten here, so the list stays as long as what runs.
        running.retain(|(_, t)| !t.is_finished());
        running.push((name, task));
    }

    /// How many registered tasks have not ended.
    pub fn running(&self) -> usize {
        let running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        running.iter().filter(|(_, t)| !t.is_finished()).count()
    }

    /// How many tasks failed or ended early (each was logged at `warn`).
    pub fn failures(&self) -> usize {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Whether [`Tasks::shutdown`] has begun: loops that must finish a step cleanly can check it.
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Stops every task: cancels them (each ends at its next await) and waits for them, at
    /// most `grace` in all; the ones still running then are aborted and their names returned.
    pub async fn shutdown(&self, grace: Duration) -> Vec<&'static str> {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *self.inner.running.lock().unwrap_or_else(|p| p.into_inner()));
        let deadline = tokio::time::Instant::now() + grace;
        let mut left = Vec::new();
        for (name, task) in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                left.push(name);
            }
        }
        if !left.is_empty() {
            log::warn!(
                "background tasks still running {} ms after the stop, aborted: {}",
                grace.as_millis(),
                left.join(", ")
            );
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets its flag when dropped: tells that a task's future was dropped (stopped).
    struct Dropped(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn loops_are_stopped_by_the_shutdown_and_early_ends_and_panics_are_failures() {
        let tasks = Tasks::new();
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = Dropped(stopped.clone());
        tasks.spawn("forever", async move {
            let _guard = guard;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        tasks.spawn("ends early", async {});
        tasks.spawn_once("restore", async {});
        tasks.spawn_once("panics", async { panic!("boom") });
        for _ in 0..200 {
            if tasks.failures() == 2 && tasks.running() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(tasks.failures(), 2, "the loop that ended and the panic; not the one-shot");
        assert_eq!(tasks.running(), 1, "only the loop still runs");
        assert!(!stopped.load(Ordering::SeqCst));
        let left = tasks.shutdown(Duration::from_secs(1)).await;
        assert!(left.is_empty(), "{left:?}");
        assert!(stopped.load(Ordering::SeqCst), "the loop's future was dropped");
        assert_eq!(tasks.running(), 0);
        assert_eq!(tasks.failures(), 2, "being stopped is not a failure");
        // Spawned after the stop: cancelled at once.
        tasks.spawn("late", async { std::future::pending::<()>().await });
        assert!(tasks.shutdown(Duration::from_millis(100)).await.is_empty());
    }

    #[tokio::test]
    async fn a_finishing_loop_takes_its_last_step_at_the_stop_and_one_that_does_not_end_is_aborted() {
        let tasks = Tasks::new();
        let steps = Arc::new(AtomicUsize::new(0));
        let s = steps.clone();
        tasks.spawn_finishing("writer", move |stop| async move {
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => false,
                    _ = stop.cancelled() => true,
                };
                // The last step awaits, as a final write does: it is not cut short.
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.fetch_add(1, Ordering::SeqCst);
                if stopping {
                    return;
                }
            }
        });
        tasks.spawn_finishing("ignores the stop", |_stop| std::future::pending::<()>());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 0);
        let left = tasks.shutdown(Duration::from_millis(300)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 1, "the last step was taken, once");
        assert_eq!(left, vec!["ignores the stop"]);
        assert_eq!(tasks.failures(), 0, "ending at the stop is not a failure");
    }

    #[tokio::test]
    async fn a_task_that_does_not_yield_to_the_stop_is_aborted_and_named() {
        let tasks = Tasks::new();
        // Never reaches an await of its own after the stop: blocks its thread for a while.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (started, running) = tokio::sync::oneshot::channel();
        tasks.spawn_on(rt.handle(), "stuck", async {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(300));
            std::future::pending::<()>().await
        });
        // Stopped once it is blocking, not after a fixed sleep: on a loaded machine the task
        // had not been polled yet 20 ms on, and a task stopped before it starts ends at once.
        running.await.expect("the task started");
        let left = tasks.shutdown(Duration::from_millis(50)).await;
        assert_eq!(left, vec!["stuck"]);
        rt.shutdown_background();
    }
}
