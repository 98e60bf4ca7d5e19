//! Where the alarm list comes from: alarm_db first, memory when alarm_db does not answer.
//!
//! Behind a load balancer a user may set an alarm on one instance and list on another; the
//! other instance's in-memory copy hears of the write through the events a few milliseconds
//! later, so only the database gives every instance the same, current answer. While alarm_db
//! is down or slow the list still answers, from the in-memory copy (exact up to the moment
//! the database went away, since no write can commit without it).

use std::{
    collections::BTreeSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use actix::Addr;
use common::{replica::AlarmBook, store::Store, Result};

use crate::store::AlarmsOf;

/// After a failed read, how long lists go straight to memory before alarm_db is tried again:
/// an outage then costs one slow request a second, not one per request.
const RETRY_DATABASE_AFTER: Duration = Duration::from_secs(1);

pub struct AlarmLists {
    store: Addr<Store>,
    deadline: Duration,
    failed_at: Mutex<Option<Instant>>,
}

impl AlarmLists {
    pub fn new(store: Addr<Store>, deadline: Duration) -> Self {
        AlarmLists { store, deadline, failed_at: Mutex::new(None) }
    }

    /// The items `user_id` has alarms on.
    pub async fn items_of(&self, user_id: i64, memory: &AlarmBook) -> Result<BTreeSet<i64>> {
        // Ids beyond `integer` cannot have alarm rows (alarm.user_id is integer).
        let Ok(id) = i32::try_from(user_id) else { return Ok(BTreeSet::new()) };
        if self.database_recently_failed() {
            return memory.items_of(user_id).await;
        }
        match tokio::time::timeout(self.deadline, self.store.send(AlarmsOf(id))).await {
            Ok(Ok(Ok(items))) => {
                self.note(None);
                Ok(items.into_iter().collect())
            }
            failed => {
                let why = match failed {
                    Ok(Ok(Err(e))) => e.to_string(),
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {} ms", self.deadline.as_millis()),
                };
                self.note(Some(why));
                memory.items_of(user_id).await
            }
        }
    }

    fn database_recently_failed(&self) -> bool {
        let failed_at = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed_at.is_some_and(|t| t.elapsed() < RETRY_DATABASE_AFTER)
    }

    /// Records the outcome of a read; logs when lists switch to memory and back.
    fn note(&self, failure: Option<String>) {
        let mut failed_at = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        match (failure, failed_at.is_some()) {
            (Some(why), was_failing) => {
                if !was_failing {
                    log::warn!("alarm lists are served from memory: alarm_db did not answer ({why})");
                }
                *failed_at = Some(Instant::now());
            }
            (None, true) => {
                log::info!("alarm lists are read from alarm_db again");
                *failed_at = None;
            }
            (None, false) => {}
        }
    }
}
