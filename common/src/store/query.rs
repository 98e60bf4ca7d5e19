//! The RPC query handler: [`Query`], the read of this domain's versioned entities that
//! snapshots, digests and the RPC fallback ask for, answered by the store from
//! `moa_entity_version` (or a domain's own function, [`OwnEntity`]), and the decoding of
//! `key, version, deleted, data, epoch` rows into [`VersionedRow`]s that domain stores share.
//! It lives in the store because every answer is one statement on the store's pool.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_postgres::types::{FromSql, Type};

use super::Store;
use crate::{
    entity::{Epoch, RawJson, VersionedRow},
    error::{Error, Result},
};

/// What a domain says of one of its own entities beyond `moa_entity_version`: its own SQL for
/// the reads that table alone does not answer, each a function defined in the domain's
/// function file `sql/functions/<function>.sql` (listed in its migrations) returning
/// `(key, version, deleted, data)` rows (the names are the domain's constants, never a
/// request's); and how its rows leave the database.
#[derive(Debug, Clone, Copy)]
pub struct OwnEntity {
    pub entity: &'static str,
    /// The answer to [`Query::Prefix`]: `function(p_prefixes text[])`, the rows of every
    /// prefix. Without one, a prefix read is the ranges of `moa_entity_version` keys starting
    /// with the prefixes; a domain whose entity also has rows outside that table (alarms loaded
    /// before capture existed, read as version 0: alarm/sql/functions/moa_alarm_rows.sql) reads
    /// them here too.
    pub prefix: Option<&'static str>,
    /// The answer to [`Query::Snapshot`], if the entity's rows are not all in
    /// `moa_entity_version`: `snapshot(p_after text, p_limit integer)`, returning one page of
    /// rows after the key `p_after` in the function's own key order
    /// (alarm/sql/functions/moa_alarm_page.sql). Read models backfill from it.
    pub snapshot: Option<&'static str>,
    /// The answer to [`Query::Lookup`]: `function(p_keys text[])`, the live rows whose lookup
    /// name (the domain's own second key, e.g. a user's token) is one of `p_keys`
    /// (user/sql/functions/moa_user_rows_by_token.sql). An entity without one has no lookups.
    pub lookup: Option<&'static str>,
    /// A row as it may leave its owner's database (a user's token replaced by its hash),
    /// applied to every change event the relay publishes and every row a query answers with;
    /// `None`: as it is.
    pub outward: Option<Outward>,
}

/// See [`OwnEntity::outward`]: the row's data in, what may leave out.
pub type Outward = fn(&RawJson) -> RawJson;

/// Whether `own` rewrites `entity`'s rows as they leave, and how.
pub fn outward_of(own: &[OwnEntity], entity: &str) -> Option<Outward> {
    own.iter().find(|e| e.entity == entity).and_then(|e| e.outward)
}

/// A read of this domain's versioned entities: what snapshots and the RPC fallback ask for.
/// The same enum is the RPC request body (`{"method": "get", "entity": "item", "keys": ["5"]}`).
#[derive(Debug, Clone, Serialize, Deserialize, Message, PartialEq)]
#[rtype(result = "Result<Vec<VersionedRow>>")]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Query {
    /// One page of every entity (tombstones included), keys ascending, after `after`.
    Snapshot { entity: String, after: Option<String>, limit: u32 },
    /// The given keys; keys never seen are simply absent.
    Get { entity: String, keys: Vec<String> },
    /// Every key starting with one of `prefixes` (an alarm prefix `"<user_id>:"` is a user's
    /// alarms), keys ascending.
    /// The only read of alarms (with `Epoch`): its [`OwnEntity::prefix`] also answers the alarms loaded
    /// before capture existed, which have no version row, so `Snapshot`, `Get`, `Digest` and
    /// `Buckets` of alarms would miss those.
    /// Several prefixes in one query: cache misses of many requests asked together
    /// (`replica::misses`); each caller takes the rows whose key starts with its own.
    Prefix { entity: String, prefixes: Vec<String> },
    /// The live rows whose lookup name is one of `keys` (a user by its token; several: see
    /// `Prefix`), answered by the owner's [`OwnEntity::lookup`]. A replica finds the same rows
    /// by the name [`crate::replica::cache::Group::lookup`] gives them (a token's hash, never the
    /// token: the rows leave the owner through [`OwnEntity::outward`]).
    Lookup { entity: String, keys: Vec<String> },
    /// A digest of every version the entity has (tombstones included), per bucket of `width`
    /// consecutive versions, so that a replica restored from its own copy can tell which
    /// buckets differ without being sent every row. Answered as rows
    /// ([`crate::replica::digest::BucketDigest::from_row`]) so that it travels the path every
    /// other query does (store, RPC, timeouts).
    Digest { entity: String, width: i64 },
    /// One page of the rows whose versions fall in the given buckets (see `Digest`), versions
    /// ascending, after version `after`.
    Buckets { entity: String, width: i64, buckets: Vec<i64>, after: i64, limit: u32 },
    /// The owner's epoch and the newest version it has handed out, as one row: key `epoch`,
    /// version = that newest version, data = the entity's tombstone horizon (the newest
    /// collected tombstone's version, a JSON number; see [`CollectTombstones`](super::CollectTombstones)). Cheap (no
    /// table scan): replicas ask it every few seconds to notice a restored or re-created owner.
    Epoch { entity: String },
}

impl Query {
    /// What is asked, for logs: "prefix", "lookup", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Query::Snapshot { .. } => "snapshot",
            Query::Get { .. } => "key",
            Query::Prefix { .. } => "prefix",
            Query::Lookup { .. } => "lookup",
            Query::Digest { .. } => "digest",
            Query::Buckets { .. } => "bucket",
            Query::Epoch { .. } => "epoch",
        }
    }

    /// Whether the answer is the entity's rows (not digests or the epoch mark): what
    /// [`OwnEntity::outward`] rewrites before the rows leave the store.
    pub fn answers_rows(&self) -> bool {
        !matches!(self, Query::Digest { .. } | Query::Epoch { .. })
    }

    pub fn entity(&self) -> &str {
        match self {
            Query::Snapshot { entity, .. }
            | Query::Get { entity, .. }
            | Query::Prefix { entity, .. }
            | Query::Digest { entity, .. }
            | Query::Buckets { entity, .. }
            | Query::Lookup { entity, .. }
            | Query::Epoch { entity } => entity,
        }
    }
}

/// A versioned row and the owner's epoch, read once per statement (an InitPlan).
const ROW_COLUMNS: &str = "key, version, deleted, data, (SELECT moa_epoch())";

/// Ends a LATERAL subquery that reads the rows of one part of a merged read (one prefix):
/// `OFFSET 0` keeps it from being flattened into a join, so each part stays the index probe it
/// is alone (a lookup function does the same: user/sql/functions/moa_user_rows_by_token.sql,
/// where a flattened plan once hashed the whole table).
const PROBE_EACH: &str = "OFFSET 0";

/// A `json`/`jsonb` column as its text, unparsed (see [`RawJson`]).
pub struct RawJsonColumn(pub RawJson);

impl<'a> FromSql<'a> for RawJsonColumn {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary form is a version byte (1) and the text.
        let text = match (ty == &Type::JSONB, raw.split_first()) {
            (false, _) => raw,
            (true, Some((1, text))) => text,
            (true, _) => return Err("unsupported jsonb format version".into()),
        };
        Ok(RawJsonColumn(RawValue::from_string(std::str::from_utf8(text)?.to_owned())?))
    }

    /// SQL NULL is JSON `null`: a row with nothing to say beyond its key (an unversioned
    /// alarm, `moa_alarm_rows`).
    fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawJsonColumn(RawValue::from_string("null".to_owned())?))
    }

    fn accepts(ty: &Type) -> bool {
        ty == &Type::JSON || ty == &Type::JSONB
    }
}

/// `key, version, deleted, data, epoch` rows as [`VersionedRow`]s.
pub fn to_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<VersionedRow>> {
    to_rows_at(rows, 0)
}

/// Like [`to_rows`], for rows whose `key, version, deleted, data, epoch` start at column
/// `first`. Rows of one statement share one epoch, so it is allocated once.
pub fn to_rows_at(rows: Vec<tokio_postgres::Row>, first: usize) -> Result<Vec<VersionedRow>> {
    let mut epoch: Option<Epoch> = None;
    rows.into_iter()
        .map(|r| {
            let text: &str = r.try_get(first + 4)?;
            let e = match &epoch {
                Some(e) if &**e == text => e.clone(),
                _ => epoch.insert(Epoch::from(text)).clone(),
            };
            Ok(VersionedRow {
                key: r.try_get(first)?,
                version: r.try_get(first + 1)?,
                deleted: r.try_get(first + 2)?,
                data: r.try_get::<_, RawJsonColumn>(first + 3)?.0,
                epoch: Some(e),
            })
        })
        .collect()
}

impl Handler<Query> for Store {
    type Result = ResponseFuture<Result<Vec<VersionedRow>>>;

    fn handle(&mut self, q: Query, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let domain_read = self.own_entities.iter().find(|r| r.entity == q.entity()).copied();
        let prefix_read = domain_read.and_then(|r| r.prefix);
        let snapshot_read = domain_read.and_then(|r| r.snapshot);
        let lookup_read = domain_read.and_then(|r| r.lookup);
        let outward = domain_read.and_then(|r| r.outward);
        let handed = std::time::Instant::now();
        self.run(async move {
            let started = std::time::Instant::now();
            let conn = pool.get().await?;
            let pooled = std::time::Instant::now();
            let timing = QueryTiming { handed, started, pooled };
            let rows = match &q {
                Query::Snapshot { after, limit, .. } if snapshot_read.is_some() => {
                    let limit = i32::try_from(*limit).unwrap_or(i32::MAX).clamp(1, 100_000);
                    // The function's name is the domain's constant, never a request's.
                    let function = snapshot_read.unwrap_or_default();
                    conn.query_prepared(&format!("SELECT {ROW_COLUMNS} FROM {function}($1, $2)"), &[after, &limit])
                        .await?
                }
                Query::Snapshot { entity, after, limit } => {
                    let limit = i64::from(*limit).clamp(1, 100_000);
                    conn.query_prepared(
                        &format!(
                            "SELECT {ROW_COLUMNS} FROM moa_entity_version
                             WHERE entity = $1 AND ($2::text IS NULL OR key > $2)
                             ORDER BY key LIMIT $3"
                        ),
                        &[entity, after, &limit],
                    )
                    .await?
                }
                Query::Get { entity, keys } => {
                    conn.query_prepared(
                        &format!("SELECT {ROW_COLUMNS} FROM moa_entity_version WHERE entity = $1 AND key = ANY($2)"),
                        &[entity, keys],
                    )
                    .await?
                }
                Query::Prefix { entity, prefixes } => match prefix_read {
                    // The function's name is the domain's constant, never a request's.
                    Some(function) => {
                        conn.query_prepared(
                            &format!("SELECT {ROW_COLUMNS} FROM {function}($1) ORDER BY key"),
                            &[prefixes],
                        )
                        .await?
                    }
                    None => {
                        // Ranges on the primary key: [prefix, prefix + U+FFFF) for each, one
                        // index probe per prefix (see `PROBE_EACH`).
                        conn.query_prepared(
                            &format!(
                                "SELECT {ROW_COLUMNS} FROM (SELECT DISTINCT unnest($2::text[]) AS p) p
                                 CROSS JOIN LATERAL (SELECT * FROM moa_entity_version v
                                     WHERE v.entity = $1 AND v.key >= p.p AND v.key < p.p || chr(65535)
                                     {PROBE_EACH}) v
                                 ORDER BY key"
                            ),
                            &[entity, prefixes],
                        )
                        .await?
                    }
                },
                Query::Digest { entity, width } => {
                    // md5 of the bucket's versions in order, as text: the replica computes the
                    // same string from what it holds (see replica::digest).
                    conn.query_prepared(
                        "SELECT (version / $2)::text, count(*), false,
                                to_jsonb(md5(string_agg(version::text, ',' ORDER BY version))),
                                (SELECT moa_epoch())
                         FROM moa_entity_version WHERE entity = $1 GROUP BY version / $2",
                        &[entity, &(*width).max(1)],
                    )
                    .await?
                }
                Query::Buckets { entity, width, buckets, after, limit } => {
                    let limit = i64::from(*limit).clamp(1, 100_000);
                    conn.query_prepared(
                        &format!(
                            "SELECT {ROW_COLUMNS} FROM moa_entity_version
                             WHERE entity = $1 AND version / $2 = ANY($3) AND version > $4
                             ORDER BY version LIMIT $5"
                        ),
                        &[entity, &(*width).max(1), buckets, after, &limit],
                    )
                    .await?
                }
                Query::Epoch { entity } => {
                    conn.query_prepared(
                        "SELECT 'epoch', moa_max_version(), false, to_jsonb(moa_tombstone_horizon($1)), e.epoch
                         FROM (SELECT moa_epoch() AS epoch) e",
                        &[entity],
                    )
                    .await?
                }
                Query::Lookup { entity, keys } => match lookup_read {
                    // The function's name is the domain's constant, never a request's.
                    Some(function) => {
                        conn.query_prepared(&format!("SELECT {ROW_COLUMNS} FROM {function}($1)"), &[keys]).await?
                    }
                    None => return Err(Error::Malformed(format!("{entity} has no lookup here"))),
                },
            };
            timing.log_if_slow(&q);
            let mut rows = to_rows(rows)?;
            if let Some(outward) = outward.filter(|_| q.answers_rows()) {
                for row in &mut rows {
                    row.data = outward(&row.data);
                }
            }
            Ok(rows)
        })
    }
}

/// Where a slow RPC answer spent its time in the store, logged at debug beside the RPC
/// server's own line (`common::amqp::rpc`): the rest of that line's time is the actor's
/// mailbox (the System arbiter, shared with the consumers) and the rows' decoding.
struct QueryTiming {
    handed: std::time::Instant,
    started: std::time::Instant,
    pooled: std::time::Instant,
}

impl QueryTiming {
    const SLOW: std::time::Duration = std::time::Duration::from_millis(50);

    fn log_if_slow(&self, q: &Query) {
        let ran = self.pooled.elapsed();
        if self.handed.elapsed() > Self::SLOW && log::log_enabled!(log::Level::Debug) {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            log::debug!(
                "store: a slow {} read waited {:.1} ms for the database runtime, {:.1} ms for a connection, and ran {:.1} ms",
                q.kind(),
                ms(self.started - self.handed),
                ms(self.pooled - self.started),
                ms(ran)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_column_is_its_text_and_sql_null_is_json_null() {
        let col = RawJsonColumn::from_sql(&Type::JSONB, b"\x01{\"a\": 1}").unwrap();
        assert_eq!(col.0.get(), r#"{"a": 1}"#);
        assert_eq!(RawJsonColumn::from_sql(&Type::JSON, b"[1]").unwrap().0.get(), "[1]");
        assert!(RawJsonColumn::from_sql(&Type::JSONB, b"\x02{}").is_err(), "an unknown jsonb format is refused");
        assert_eq!(RawJsonColumn::from_sql_null(&Type::JSONB).unwrap().0.get(), "null");
    }
}
