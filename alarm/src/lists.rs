//! Where the alarm list comes from: alarm_db first, this instance's cache when alarm_db does
//! not answer.
//!
//! Behind a load balancer a user may set an alarm on one instance and list on another; the
//! other instance's cache hears of the write through the events a few milliseconds later, so
//! only the database gives every instance the same, current answer. Each answer is also kept
//! as the user's cache entry (bounded, kept exact by events), so while alarm_db is down or
//! slow the list still answers for the users seen before (exact up to the moment the database
//! went away, since no write can commit without it); others get a 503.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alarm_kind::AlarmBook;
use common::{Error, Result};

/// After a failed read, how long lists go straight to the cache before alarm_db is tried
/// again: an outage then costs one slow request a second, not one per request.
const RETRY_DATABASE_AFTER: Duration = Duration::from_secs(1);

pub struct AlarmLists {
    deadline: Duration,
    failed_at: Mutex<Option<Instant>>,
}

impl AlarmLists {
    pub fn new(deadline: Duration) -> Self {
        AlarmLists { deadline, failed_at: Mutex::new(None) }
    }

    /// The items `user_id` has alarms on.
    pub async fn items_of(&self, user_id: i64, cache: &AlarmBook) -> Result<Arc<BTreeSet<i64>>> {
        // Ids beyond `integer` cannot have alarm rows (alarm.user_id is integer).
        if i32::try_from(user_id).is_err() {
            return Ok(Arc::default());
        }
        if self.database_recently_failed() {
            return cache.cached_only(user_id, Error::DbUnavailable("alarm_db did not answer a moment ago".into()));
        }
        match cache.read_through(user_id, self.deadline).await {
            Ok(items) => {
                self.note(None);
                Ok(items)
            }
            Err(e) => {
                self.note(Some(e.to_string()));
                cache.cached_only(user_id, e)
            }
        }
    }

    fn database_recently_failed(&self) -> bool {
        let failed_at = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed_at.is_some_and(|t| t.elapsed() < RETRY_DATABASE_AFTER)
    }

    /// Records the outcome of a read; logs when lists switch to the cache and back.
    fn note(&self, failure: Option<String>) {
        let mut failed_at = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        match (failure, failed_at.is_some()) {
            (Some(why), was_failing) => {
                if !was_failing {
                    log::warn!("alarm lists are served from the cache: alarm_db did not answer ({why})");
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
