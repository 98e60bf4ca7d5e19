//! Anti-entropy for a replica that already holds rows (restored from its persisted copy, or
//! re-syncing after a broker outage): compare digests of versions, fetch only what differs.
//!
//! Versions come from one sequence per owner database, so a version names one state of one
//! row: two holders have the same rows exactly when they hold the same set of versions. The
//! owner and the replica each cut their versions into buckets of [`WIDTH`] consecutive
//! versions and hash each bucket's versions (ascending, as decimal text joined by commas,
//! md5; `Query::Digest`). A bucket whose digest differs holds a change the replica missed, or
//! a row the replica holds in an older version; the owner's rows in those buckets
//! (`Query::Buckets`) bring the replica level. Unlike "everything after my newest version",
//! this also catches a change that took its version early and committed late, after the
//! replica had seen newer ones.

use std::collections::HashMap;

use md5::{Digest as _, Md5};

use crate::entity::VersionedRow;

/// Versions per bucket: ~1,000 buckets per million rows, a digest answer of ~50 KB.
pub const WIDTH: i64 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDigest {
    pub bucket: i64,
    pub rows: i64,
    pub md5: String,
}

impl BucketDigest {
    /// Reads one row of a `Query::Digest` answer: key = bucket, version = row count, data =
    /// the md5 as a JSON string.
    pub fn from_row(row: &VersionedRow) -> Option<BucketDigest> {
        Some(BucketDigest { bucket: row.key.parse().ok()?, rows: row.version, md5: row.parse().ok()? })
    }

    /// The digests of a set of versions, in any order, by bucket.
    pub fn of_versions(mut versions: Vec<i64>, width: i64) -> HashMap<i64, BucketDigest> {
        versions.sort_unstable();
        let mut out = HashMap::new();
        let mut text = String::new();
        for chunk in versions.chunk_by(|a, b| a.div_euclid(width) == b.div_euclid(width)) {
            text.clear();
            for (i, v) in chunk.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&v.to_string());
            }
            let bucket = chunk[0].div_euclid(width);
            let md5 = hex(&Md5::digest(text.as_bytes()));
            out.insert(bucket, BucketDigest { bucket, rows: chunk.len() as i64, md5 });
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The owner's buckets that the replica does not hold exactly, and how many owner rows they
/// have. A bucket only the replica has needs nothing: its rows are older versions of rows the
/// owner holds in later buckets, which differ and are fetched.
pub fn differing(owner: &[BucketDigest], mine: &HashMap<i64, BucketDigest>) -> (Vec<i64>, i64) {
    let mut buckets = Vec::new();
    let mut rows = 0;
    for d in owner {
        if mine.get(&d.bucket) != Some(d) {
            buckets.push(d.bucket);
            rows += d.rows;
        }
    }
    buckets.sort_unstable();
    (buckets, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::raw_json;

    #[test]
    fn the_digest_is_md5_of_the_sorted_versions_joined_by_commas() {
        // PostgreSQL 15: SELECT md5(string_agg(v::text, ',' ORDER BY v)) FROM unnest(ARRAY[1023,1,5]) v
        let d = BucketDigest::of_versions(vec![1023, 1, 5, 1024, 2047], WIDTH);
        assert_eq!(d.len(), 2);
        assert_eq!(d[&0].rows, 3);
        assert_eq!(d[&0].md5, "e80ca0b21fa825e48a6fa9d1aa4ee4f7");
        assert_eq!(d[&1].rows, 2);
        assert_eq!(d[&1].md5, hex(&Md5::digest(b"1024,2047")));
    }

    #[test]
    fn only_owner_buckets_the_replica_lacks_or_holds_differently_are_fetched() {
        let owner_versions = vec![1, 2, 3, 1030, 1031, 5000];
        let owner: Vec<BucketDigest> = BucketDigest::of_versions(owner_versions, WIDTH).into_values().collect();
        // The replica: bucket 0 equal, bucket 1 missing 1031 (a late commit), bucket 4 absent
        // (5000 not yet seen), plus an older version (2100, bucket 2) of a row the owner moved.
        let mine = BucketDigest::of_versions(vec![1, 2, 3, 1030, 2100], WIDTH);
        let (buckets, rows) = differing(&owner, &mine);
        assert_eq!(buckets, vec![1, 4]);
        assert_eq!(rows, 3);
        let same = BucketDigest::of_versions(vec![5000, 1031, 1030, 3, 2, 1], WIDTH);
        assert_eq!(differing(&owner, &same), (vec![], 0), "the same versions in any order: nothing to fetch");
    }

    #[test]
    fn digest_rows_are_read_back() {
        let row = VersionedRow {
            key: "977".into(),
            version: 1000,
            deleted: false,
            data: raw_json(&serde_json::json!("0123456789abcdef0123456789abcdef")),
            epoch: None,
        };
        assert_eq!(
            BucketDigest::from_row(&row),
            Some(BucketDigest { bucket: 977, rows: 1000, md5: "0123456789abcdef0123456789abcdef".into() })
        );
        let bad = VersionedRow { key: "x".into(), ..row };
        assert_eq!(BucketDigest::from_row(&bad), None);
    }
}
