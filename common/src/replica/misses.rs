//! Cache misses of many requests asked of the owner together.
//!
//! A user's first request misses twice (its token, its alarms), and each miss asked alone
//! cost the owner a statement of its own (parse, plan, two round trips) and an RPC message
//! each way: at a few hundred new users a second that was most of the machine's CPU. While
//! [`LANES`] questions are on their way, the misses that arrive meanwhile wait and go out as
//! one query (`Lookup` with every key, `Prefix` with every prefix): one message, one
//! set-based statement. A lone miss is sent at once, so an idle system pays nothing for this.
//!
//! The owner answers a merged query with the rows of every part; each caller takes the rows
//! that answer its own part, by the same test the owner's SQL applies (the row's lookup name,
//! the key's prefix), so what a caller gets is what its query alone would have got.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::oneshot;

use crate::{
    batch::MAX_BATCH,
    entity::VersionedRow,
    error::{Error, Result},
    replica::Source,
    store::query::Query,
};

/// Merged questions in flight at a time; the misses arriving meanwhile form the next ones.
pub const LANES: usize = 2;

type Waiter = oneshot::Sender<Result<Vec<VersionedRow>>>;

/// One cache's misses, merged while earlier ones are asked (see the module's comment).
pub struct MissBatcher {
    source: Source,
    queue: Arc<Mutex<Queue>>,
    names: LookupNames,
}

/// How the cache's kind names its lookups: a lookup key's name in the rows (a token's hash),
/// and a row's name ([`crate::replica::cache::Group::lookup_name`], [`crate::replica::cache::Group::lookup`]).
#[derive(Clone, Copy)]
pub struct LookupNames {
    pub of_key: fn(&str) -> String,
    pub of_row: fn(&VersionedRow) -> Option<String>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(Query, Waiter)>,
    in_flight: usize,
}

impl Queue {
    /// Up to [`MAX_BATCH`] misses, oldest first, of callers still waiting: one that gave up
    /// (its timeout passed while an owner was slow) is dropped, not asked, so with an owner
    /// that hangs the queue holds no more than the requests waiting, whatever the arrival rate.
    fn next_batch(&mut self) -> Vec<(Query, Waiter)> {
        self.waiting.retain(|(_, waiter)| !waiter.is_closed());
        let n = self.waiting.len().min(MAX_BATCH);
        self.waiting.drain(..n).collect()
    }
}

/// What can be merged: queries of one kind whose parts each answer one caller.
#[derive(PartialEq, Eq, Hash, Clone)]
enum MergeKey {
    Lookups(String),
    Prefixes(String),
}

fn merge_key(q: &Query) -> Option<MergeKey> {
    match q {
        Query::Lookup { entity, .. } => Some(MergeKey::Lookups(entity.clone())),
        Query::Prefix { entity, .. } => Some(MergeKey::Prefixes(entity.clone())),
        _ => None,
    }
}

/// The queries as one, each distinct part once.
fn merged(key: &MergeKey, parts: &[&Query]) -> Query {
    let mut all: Vec<String> = Vec::new();
    for q in parts {
        match q {
            Query::Lookup { keys, .. } => all.extend(keys.iter().cloned()),
            Query::Prefix { prefixes, .. } => all.extend(prefixes.iter().cloned()),
            _ => {}
        }
    }
    all.sort_unstable();
    all.dedup();
    match key {
        MergeKey::Lookups(entity) => Query::Lookup { entity: entity.clone(), keys: all },
        MergeKey::Prefixes(entity) => Query::Prefix { entity: entity.clone(), prefixes: all },
    }
}

/// The parts a query asks for: its lookup keys, or its prefixes.
fn parts(q: &Query) -> &[String] {
    match q {
        Query::Lookup { keys, .. } => keys,
        Query::Prefix { prefixes, .. } => prefixes,
        _ => &[],
    }
}

/// Each query's rows out of the answer to all of them: the rows that answer it alone, by the
/// owner's own test (the row's lookup name is one of its keys' names; the key starts with one
/// of its prefixes). Each row is looked at once: its lookup name, or each of its key's
/// prefixes, looked up.
fn split(queries: &[Query], rows: &[VersionedRow], names: LookupNames) -> Vec<Vec<VersionedRow>> {
    let by_lookup = matches!(queries.first(), Some(Query::Lookup { .. }));
    let mut asked: HashMap<std::borrow::Cow<'_, str>, Vec<usize>> = HashMap::new();
    for (i, q) in queries.iter().enumerate() {
        for part in parts(q) {
            // Answers carry a key's name (a token's hash), never the key (store::query::OwnEntity::outward).
            let part = if by_lookup { (names.of_key)(part).into() } else { part.as_str().into() };
            let askers = asked.entry(part).or_default();
            if askers.last() != Some(&i) {
                askers.push(i);
            }
        }
    }
    let mut out: Vec<Vec<VersionedRow>> = vec![Vec::new(); queries.len()];
    // The row each query got last: a row two of its prefixes match is its once.
    let mut last: Vec<Option<usize>> = vec![None; queries.len()];
    for (r, row) in rows.iter().enumerate() {
        let mut give = |part: &str| {
            for &i in asked.get(part).into_iter().flatten() {
                if last[i] != Some(r) {
                    last[i] = Some(r);
                    out[i].push(row.clone());
                }
            }
        };
        if by_lookup {
            if let Some(name) = (names.of_row)(row) {
                give(&name);
            }
        } else {
            let key = row.key.as_str();
            for end in (0..=key.len()).filter(|&e| key.is_char_boundary(e)) {
                give(&key[..end]);
            }
        }
    }
    out
}

impl MissBatcher {
    pub fn new(source: Source, names: LookupNames) -> Self {
        MissBatcher { source, queue: Arc::default(), names }
    }

    /// Asks `q` of the source, merged with the misses of other requests when it can be; waits
    /// at most `timeout` in all (queued behind an earlier question included).
    pub async fn query(&self, q: Query, timeout: Duration) -> Result<Vec<VersionedRow>> {
        if merge_key(&q).is_none() {
            return self.source.query(q, timeout).await;
        }
        let (tx, rx) = oneshot::channel();
        let start_lane = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.waiting.push((q, tx));
            let free = queue.in_flight < LANES;
            if free {
                queue.in_flight += 1;
            }
            free
        };
        if start_lane {
            // Not the request's own future: a caller that goes away does not take its
            // neighbours' question with it.
            tokio::spawn(drain(self.source.clone(), self.queue.clone(), self.names, timeout));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Error::StoreGone),
            Err(_) => Err(self.source.timed_out()),
        }
    }
}

/// A lane's place in `in_flight`: given back when the lane finds nothing waiting (under the
/// same lock, so a miss queued just after it starts a lane of its own), or when the lane ends
/// any other way (a panic), so that lanes are never lost and misses never wait for none.
struct Lane {
    queue: Arc<Mutex<Queue>>,
    released: bool,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if !self.released {
            self.queue.lock().unwrap_or_else(|p| p.into_inner()).in_flight -= 1;
        }
    }
}

/// One lane: asks what is waiting, merged, until nothing is.
async fn drain(source: Source, queue: Arc<Mutex<Queue>>, names: LookupNames, timeout: Duration) {
    let mut lane = Lane { queue, released: false };
    loop {
        let batch: Vec<(Query, Waiter)> = {
            let mut q = lane.queue.lock().unwrap_or_else(|p| p.into_inner());
            let batch = q.next_batch();
            if batch.is_empty() {
                q.in_flight -= 1;
                drop(q);
                lane.released = true;
                return;
            }
            batch
        };
        let mut groups: HashMap<MergeKey, Vec<(Query, Waiter)>> = HashMap::new();
        for (q, w) in batch {
            // Only mergeable queries are queued.
            if let Some(key) = merge_key(&q) {
                groups.entry(key).or_default().push((q, w));
            }
        }
        for (key, parts) in groups {
            let question = if parts.len() == 1 {
                parts[0].0.clone()
            } else {
                merged(&key, &parts.iter().map(|(q, _)| q).collect::<Vec<_>>())
            };
            match source.query(question, timeout).await {
                Ok(rows) => {
                    let (queries, waiters): (Vec<Query>, Vec<Waiter>) = parts.into_iter().unzip();
                    for (waiter, mine) in waiters.into_iter().zip(split(&queries, &rows, names)) {
                        let _ = waiter.send(Ok(mine));
                    }
                }
                Err(e) => {
                    for (_, waiter) in parts {
                        let _ = waiter.send(Err(e.same_kind()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::raw_json;
    use serde_json::json;

    fn user(id: i64, token: &str) -> VersionedRow {
        VersionedRow {
            key: id.to_string(),
            version: id,
            deleted: false,
            data: raw_json(&json!({"id": id, "name": "n", "token_hash": crate::token::token_hash(token)})),
            epoch: None,
        }
    }

    fn alarm(user: i64, item: i64) -> VersionedRow {
        VersionedRow {
            key: format!("{user}:{item}"),
            version: 1,
            deleted: false,
            data: raw_json(&json!({"user_id": user, "item_id": item})),
            epoch: None,
        }
    }

    /// Lookups by token as the user directory names them (`user_kind::Users`).
    const USERS: LookupNames = LookupNames {
        of_key: <crate::replica::fixtures::Named as crate::replica::cache::Group>::lookup_name,
        of_row: <crate::replica::fixtures::Named as crate::replica::cache::Group>::lookup,
    };

    fn by_token(token: &str) -> Query {
        Query::Lookup { entity: "user".into(), keys: vec![token.into()] }
    }

    #[test]
    fn parts_are_merged_once_each_and_each_query_gets_the_rows_of_its_own_parts() {
        let a = by_token("t-b");
        let b = by_token("t-a");
        let c = by_token("t-b");
        let m = merged(&MergeKey::Lookups("user".into()), &[&a, &b, &c]);
        assert!(matches!(&m, Query::Lookup { entity, keys } if entity == "user" && *keys == ["t-a", "t-b"]));
        let rows = [user(1, "t-a"), user(2, "t-b"), user(3, "t-c")];
        let keys = |got: Vec<Vec<VersionedRow>>| -> Vec<Vec<String>> {
            got.into_iter().map(|rows| rows.into_iter().map(|r| r.key).collect()).collect()
        };
        assert_eq!(keys(split(&[a.clone(), b.clone(), c.clone()], &rows, USERS)), [vec!["2"], vec!["1"], vec!["2"]]);
        // A tombstone or a row without a token answers no token lookup.
        let mut gone = user(4, "t-a");
        gone.data = raw_json(&json!(null));
        assert_eq!(keys(split(std::slice::from_ref(&b), &[gone], USERS)), [Vec::<String>::new()]);
        // A tombstone carries its last state: it answers the lookup of its token, as it would
        // have answered that question alone (the caller keeps it as the user's deleted entry).
        let mut deleted = user(5, "t-a");
        deleted.deleted = true;
        assert_eq!(keys(split(std::slice::from_ref(&b), &[deleted], USERS)), [vec!["5"]]);

        let p1 = Query::Prefix { entity: "alarm".into(), prefixes: vec!["1:".into()] };
        let p12 = Query::Prefix { entity: "alarm".into(), prefixes: vec!["12:".into()] };
        let m = merged(&MergeKey::Prefixes("alarm".into()), &[&p1, &p12]);
        assert!(matches!(&m, Query::Prefix { entity, prefixes } if entity == "alarm" && *prefixes == ["12:", "1:"]));
        let rows = [alarm(1, 5), alarm(1, 9), alarm(12, 7), alarm(121, 1)];
        assert_eq!(keys(split(&[p1.clone(), p12.clone()], &rows, USERS)), [vec!["1:5", "1:9"], vec!["12:7"]]);
        // Prefixes of any shape: a row goes to every query one of whose prefixes it starts with.
        let odd = Query::Prefix { entity: "alarm".into(), prefixes: vec!["1".into(), "".into()] };
        assert_eq!(keys(split(&[odd, p12], &rows, USERS)), [vec!["1:5", "1:9", "12:7", "121:1"], vec!["12:7"]]);
    }

    #[test]
    fn a_miss_whose_caller_gave_up_is_not_asked() {
        let mut queue = Queue::default();
        let ask = by_token;
        let (waiting, _kept) = oneshot::channel();
        let (gone, receiver) = oneshot::channel();
        drop(receiver);
        queue.waiting.push((ask("gave-up"), gone));
        queue.waiting.push((ask("waits"), waiting));
        let batch = queue.next_batch();
        assert_eq!(batch.len(), 1);
        assert!(matches!(&batch[0].0, Query::Lookup { keys, .. } if keys[0] == "waits"));
        assert!(queue.next_batch().is_empty(), "nothing left behind");
    }

    #[tokio::test]
    async fn an_unreachable_owner_fails_every_waiting_miss_with_its_own_kind_of_error() {
        let batcher = MissBatcher::new(
            Source::Remote {
                rpc: crate::amqp::rpc::RpcClient::detached(),
                owner: crate::settings::Domain::new("user"),
            },
            USERS,
        );
        let asks = (0..5).map(|i| batcher.query(by_token(&format!("t{i}")), Duration::from_millis(200)));
        let answers = futures_util::future::join_all(asks).await;
        assert!(answers.iter().all(|a| matches!(a, Err(Error::BusDown))), "{answers:?}");
        assert_eq!(batcher.queue.lock().unwrap().in_flight, 0, "the lanes ended");
    }
}
