//! The audit log's hash chain, pure.
//!
//! Records are written in the transaction of the change they describe; a sealer then appends,
//! in record-key (time) order, one [`Seal`] per record: `hash = SHA-256(prev ‖ seq ‖
//! record_hash)`, where `record_hash` is SHA-256 of the record's stored bytes and `prev` the
//! previous seal's hash (the [`GENESIS`] for the first, or an [`Anchor`] left by retention).
//! Changing, removing or inserting a sealed record, or changing a seal, breaks the chain at that
//! point, and [`verify`] names it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev` of the first seal.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub seq: u64,
    /// The sealed record's store key.
    pub key: String,
    pub record_hash: String,
    pub prev: String,
    pub hash: String,
}

/// Where a chain starts after retention removed its beginning: the last removed seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a record's stored bytes.
pub fn record_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The seal's own hash.
pub fn chain_hash(prev: &str, seq: u64, record_hash: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(seq.to_be_bytes());
    hasher.update(record_hash.as_bytes());
    hex(&hasher.finalize())
}

/// The seal that follows `prev` (a seal, an anchor, or nothing) for a record.
pub fn next_seal(prev: Option<(u64, &str)>, key: &str, bytes: &[u8]) -> Seal {
    let (seq, prev_hash) = match prev {
        Some((seq, hash)) => (seq + 1, hash.to_owned()),
        None => (1, GENESIS.to_owned()),
    };
    let record_hash = record_hash(bytes);
    Seal {
        seq,
        key: key.to_owned(),
        hash: chain_hash(&prev_hash, seq, &record_hash),
        record_hash,
        prev: prev_hash,
    }
}

/// One break found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub seq: Option<u64>,
    pub key: Option<String>,
    pub message: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ok: bool,
    /// Seals checked.
    pub sealed: u64,
    pub problems: Vec<Problem>,
}

/// Checks `seals` (in seq order, starting right after `anchor` or at 1) against the stored
/// records (`records`: key → stored bytes, every record the store holds in the sealed range),
/// and that no record in that range is unsealed.
pub fn verify(
    anchor: Option<&Anchor>,
    seals: &[Seal],
    records: &HashMap<String, Vec<u8>>,
) -> Report {
    let mut problems = Vec::new();
    let (mut seq, mut prev) = match anchor {
        Some(anchor) => (anchor.seq, anchor.hash.clone()),
        None => (0, GENESIS.to_owned()),
    };
    let mut sealed_keys = std::collections::HashSet::new();
    for seal in seals {
        let at = |message: String| Problem {
            seq: Some(seal.seq),
            key: Some(seal.key.clone()),
            message,
        };
        if seal.seq != seq + 1 {
            problems.push(at(format!(
                "expected seal {} here, found {}",
                seq + 1,
                seal.seq
            )));
        }
        if seal.prev != prev {
            problems.push(at(
                "the seal does not follow the previous one (prev hash differs)".into(),
            ));
        }
        if seal.hash != chain_hash(&seal.prev, seal.seq, &seal.record_hash) {
            problems.push(at(
                "the seal's own hash is wrong (the seal was altered)".into()
            ));
        }
        match records.get(&seal.key) {
            None => problems.push(at("the sealed record is missing".into())),
            Some(bytes) if record_hash(bytes) != seal.record_hash => {
                problems.push(at("the record was altered after it was sealed".into()));
            }
            Some(_) => {}
        }
        sealed_keys.insert(seal.key.as_str());
        seq = seal.seq;
        prev = seal.hash.clone();
    }
    if let Some(last) = seals.last() {
        for key in records.keys() {
            if key.as_str() < last.key.as_str() && !sealed_keys.contains(key.as_str()) {
                problems.push(Problem {
                    seq: None,
                    key: Some(key.clone()),
                    message: "an unsealed record sits inside the sealed range (inserted later?)"
                        .into(),
                });
            }
        }
    }
    problems.sort_by(|a, b| a.seq.cmp(&b.seq).then_with(|| a.key.cmp(&b.key)));
    Report {
        ok: problems.is_empty(),
        sealed: seals.len() as u64,
        problems,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chain(n: usize) -> (Vec<Seal>, HashMap<String, Vec<u8>>) {
        let mut seals: Vec<Seal> = Vec::new();
        let mut records = HashMap::new();
        for i in 0..n {
            let key = format!("l{i:05}");
            let bytes = format!("{{\"n\":{i}}}").into_bytes();
            let prev = seals.last().map(|s| (s.seq, s.hash.as_str()));
            let seal = next_seal(prev, &key, &bytes);
            records.insert(key, bytes);
            seals.push(seal);
        }
        (seals, records)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (seals, records) = chain(5);
        let report = verify(None, &seals, &records);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.sealed, 5);
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let (seals, mut records) = chain(5);
        records.insert("l00002".into(), b"{\"n\":99}".to_vec());
        let report = verify(None, &seals, &records);
        assert!(!report.ok);
        assert_eq!(report.problems[0].seq, Some(3));

        let (seals, mut records) = chain(5);
        records.remove("l00001");
        assert!(!verify(None, &seals, &records).ok);

        let (mut seals, records) = chain(5);
        seals.remove(2);
        assert!(!verify(None, &seals, &records).ok, "a removed seal");

        let (mut seals, records) = chain(5);
        seals[1].record_hash = record_hash(b"other");
        assert!(!verify(None, &seals, &records).ok, "an altered seal");

        let (seals, mut records) = chain(5);
        records.insert("l00001x".into(), b"{}".to_vec());
        assert!(!verify(None, &seals, &records).ok, "an inserted record");
    }

    #[test]
    fn an_anchor_continues_the_chain() {
        let (seals, records) = chain(6);
        let anchor = Anchor {
            seq: seals[2].seq,
            hash: seals[2].hash.clone(),
        };
        let rest: HashMap<String, Vec<u8>> = records
            .into_iter()
            .filter(|(k, _)| k.as_str() > "l00002")
            .collect();
        assert!(verify(Some(&anchor), &seals[3..], &rest).ok);
        let wrong = Anchor {
            seq: 3,
            hash: GENESIS.into(),
        };
        assert!(!verify(Some(&wrong), &seals[3..], &rest).ok);
    }
}
