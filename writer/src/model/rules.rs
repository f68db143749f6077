//! Parsed rules kept between commits: compiled prefix schemas and parsed approval policies,
//! each reused while its record is unchanged (same key, same mod revision or version), so a
//! commit compiles nothing unless a schema changed. The store stays the only truth: every commit
//! reads the records' revisions again (one range read in the commit's own read) and compares
//! them in its transaction; the cache only saves parsing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use setpoint_core::ConfigPath;
use setpoint_core::validate::Schema;

use super::approvals::{self, Policy};
use super::records::{self, Keys, Pointer, PrefixSchema};
use super::{Configs, Version};
use crate::error::Error;
use crate::store::{KeyValue, Read, Revision};

/// One compiled prefix schema and the mod revision of the record it was compiled from.
type CachedSchema = (Revision, ConfigPath, Arc<Schema>);

#[derive(Default)]
pub struct RuleCache {
    /// Schema key → its compiled schema.
    schemas: Mutex<HashMap<String, CachedSchema>>,
    /// Policy path → (entry version, the policy; `None` when the entry is not a policy).
    policies: Mutex<HashMap<ConfigPath, (Version, Option<Policy>)>>,
}

impl RuleCache {
    /// The prefix schemas of `records` (every `P s…` record, as just read), compiled — or taken
    /// from the cache when the record did not change.
    pub fn schemas(
        &self,
        keys: &Keys,
        records: Vec<KeyValue>,
    ) -> Result<Vec<(ConfigPath, Arc<Schema>)>, Error> {
        let mut cache = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = HashMap::with_capacity(records.len());
        let mut out = Vec::with_capacity(records.len());
        for kv in records {
            let Some(prefix) = keys.path_of_schema(&kv.key) else {
                continue;
            };
            let compiled = match cache.remove(&kv.key) {
                Some((revision, _, compiled)) if revision == kv.mod_revision => compiled,
                _ => {
                    let record: PrefixSchema = records::decode_json(&kv.key, &kv.value)?;
                    let compiled = Schema::compile(&record.schema, format!("schema:{prefix}"))
                        .map_err(|e| {
                            Error::internal(format!(
                                "stored prefix schema on {prefix} no longer compiles: {e}"
                            ))
                        })?;
                    Arc::new(compiled)
                }
            };
            out.push((prefix.clone(), compiled.clone()));
            fresh.insert(kv.key, (kv.mod_revision, prefix, compiled));
        }
        // Deleted schemas leave the cache with this swap.
        *cache = fresh;
        Ok(out)
    }
}

impl Configs {
    /// The approval policies of `pointers` (every policy pointer, as just read): parsed ones from
    /// the cache by version, the others read (one round trip) and parsed. A version record never
    /// changes, so reading it after the pointers is still the state the pointers name.
    pub(super) async fn policies_from(
        &self,
        pointers: Vec<KeyValue>,
    ) -> Result<Vec<(ConfigPath, Policy)>, Error> {
        let mut live = Vec::with_capacity(pointers.len());
        for kv in pointers {
            let Some(path) = self.keys.path_of_pointer(&kv.key) else {
                continue;
            };
            let pointer: Pointer = records::decode_json(&kv.key, &kv.value)?;
            if !pointer.deleted {
                live.push((path, pointer.version));
            }
        }
        let missing: Vec<(ConfigPath, Version)> = {
            let cache = self
                .rules
                .policies
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            live.iter()
                .filter(|(path, version)| cache.get(path).is_none_or(|(v, _)| v != version))
                .cloned()
                .collect()
        };
        let mut loaded = Vec::with_capacity(missing.len());
        if !missing.is_empty() {
            let reads = missing
                .iter()
                .map(|(path, version)| Read::Get(self.keys.version(path, *version)))
                .collect();
            let set = self.store.read(reads).await?;
            for ((path, version), kvs) in missing.into_iter().zip(set.results) {
                let policy = match kvs.first() {
                    Some(kv) => {
                        let (_, stored) = records::decode_version(&kv.key, &kv.value)?;
                        serde_json::from_str::<Policy>(&stored).ok()
                    }
                    None => None,
                };
                loaded.push((path, (version, policy)));
            }
        }
        let mut cache = self
            .rules
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        cache.extend(loaded);
        cache.retain(|path, _| live.iter().any(|(p, _)| p == path));
        Ok(live
            .iter()
            .filter_map(|(path, _)| {
                let (_, policy) = cache.get(path)?;
                Some((approvals::governed_prefix(path)?, policy.clone()?))
            })
            .collect())
    }
}
