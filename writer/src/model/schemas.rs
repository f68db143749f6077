//! Prefix schemas: one JSON Schema that every config at or below a prefix must satisfy.
//!
//! An environment override `/env/{e}/{path}` is the same config as `/{path}`, so a prefix schema
//! on `/myapp` also applies to `/env/prod/myapp/...`. Putting a schema checks every live config it
//! would govern first; if any violates it, nothing is stored and the 422 lists them all. The
//! schema's transaction compares the ranges it checked (no config under them written since), and
//! every config commit compares the schemas' range, so a schema and a write racing it can never
//! both land unchecked against each other.

use serde_json::Value;
use setpoint_core::validate::{Schema, Violation};
use setpoint_core::{ConfigPath, ParsedValue};

use super::Configs;
use super::plan::violation_error;
use super::records::{self, Meta, Pointer, PrefixSchema};
use crate::error::Error;
use crate::store::{Compare, CompareOp, RangeRequest, Read, Revision, Txn, TxnOp};

/// The base config path an override stands for: `/env/prod/a/b` → `/a/b`.
pub fn base_path(path: &ConfigPath) -> Option<ConfigPath> {
    let mut segments = path.segments();
    if segments.next() != Some("env") {
        return None;
    }
    segments.next()?;
    let rest: Vec<&str> = segments.collect();
    ConfigPath::parse(&rest.join("/"))
        .ok()
        .filter(|p| !p.is_root())
}

/// True when a schema on `prefix` governs `path` (directly or through the override's base path).
pub fn applies(prefix: &ConfigPath, path: &ConfigPath) -> bool {
    path.starts_with(prefix) || base_path(path).is_some_and(|base| base.starts_with(prefix))
}

#[derive(Debug, Clone)]
pub struct StoredSchema {
    pub prefix: ConfigPath,
    pub schema: Value,
    pub meta: Meta,
    pub revision: Revision,
}

impl Configs {
    pub async fn list_schemas(&self) -> Result<Vec<StoredSchema>, Error> {
        let range = self
            .store
            .range(RangeRequest::prefix(&self.keys.schemas()))
            .await?;
        let mut out = Vec::with_capacity(range.kvs.len());
        for kv in range.kvs {
            let Some(prefix) = self.keys.path_of_schema(&kv.key) else {
                continue;
            };
            let record: PrefixSchema = records::decode_json(&kv.key, &kv.value)?;
            out.push(StoredSchema {
                prefix,
                schema: record.schema,
                meta: record.meta,
                revision: kv.mod_revision,
            });
        }
        Ok(out)
    }

    pub async fn get_schema(&self, prefix: &ConfigPath) -> Result<Option<StoredSchema>, Error> {
        let key = self.keys.schema(prefix);
        let Some(kv) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let record: PrefixSchema = records::decode_json(&key, &kv.value)?;
        Ok(Some(StoredSchema {
            prefix: prefix.clone(),
            schema: record.schema,
            meta: record.meta,
            revision: kv.mod_revision,
        }))
    }

    /// Stores the schema for `prefix` after checking every live config it governs.
    pub async fn put_schema(
        &self,
        prefix: &ConfigPath,
        schema: Value,
        actor: &super::Actor,
    ) -> Result<Revision, Error> {
        let compiled = Schema::compile(&schema, format!("schema:{prefix}"))?;
        let (violations, checked) = self.existing_violations(prefix, &compiled).await?;
        if !violations.is_empty() {
            let truncated = violations.len() > setpoint_core::validate::MAX_VIOLATIONS;
            let mut err = violation_error(violations, truncated);
            err.message = format!("existing configs violate this schema: {}", err.message);
            return Err(err);
        }
        let (now_time, now) = self.now();
        let record = PrefixSchema {
            schema,
            meta: Meta {
                updated_by: actor.name.clone(),
                updated_at: now,
                ..Meta::default()
            },
        };
        let event = crate::audit::Event {
            action: "schema.put",
            path: Some(prefix.as_str()),
            version_before: None,
            version_after: None,
            outcome: crate::audit::Outcome::Ok,
            detail: None,
        };
        let txn = Txn {
            compares: checked,
            writes: vec![
                TxnOp::Put {
                    key: self.keys.schema(prefix),
                    value: records::encode_json(&record),
                },
                self.audit.write(actor, &event, now_time),
            ],
        };
        let outcome = self.store.txn(txn).await?;
        if !outcome.succeeded {
            return Err(Error::new(
                crate::error::ErrorCode::Conflict,
                format!("configs under {prefix} changed while the schema was checked; retry"),
            ));
        }
        Ok(outcome.revision)
    }

    pub async fn delete_schema(
        &self,
        prefix: &ConfigPath,
        actor: &super::Actor,
    ) -> Result<Revision, Error> {
        let key = self.keys.schema(prefix);
        if self.store.get(&key).await?.is_none() {
            return Err(Error::not_found(format!("no schema on {prefix}")));
        }
        let event = crate::audit::Event {
            action: "schema.delete",
            path: Some(prefix.as_str()),
            version_before: None,
            version_after: None,
            outcome: crate::audit::Outcome::Ok,
            detail: None,
        };
        let txn = Txn {
            compares: vec![],
            writes: vec![
                TxnOp::Delete { key },
                self.audit.write(actor, &event, self.clock.now()),
            ],
        };
        Ok(self.store.txn(txn).await?.revision)
    }

    /// Every violation of `schema` among the live configs it would govern, and the compares
    /// that hold while none of those configs changed since (all read at one revision).
    async fn existing_violations(
        &self,
        prefix: &ConfigPath,
        schema: &Schema,
    ) -> Result<(Vec<(ConfigPath, Violation)>, Vec<Compare>), Error> {
        let governed = if prefix.is_root() {
            vec![self.keys.pointers_below(&ConfigPath::root())]
        } else {
            // Only the prefix itself, its subtree and overrides can be governed.
            let env = ConfigPath::parse("/env").unwrap_or_else(|_| ConfigPath::root());
            vec![self.keys.pointer(prefix), self.keys.pointers_below(&env)]
        };
        let set = self
            .store
            .read(
                governed
                    .iter()
                    .map(|range| Read::Range(RangeRequest::prefix(range)))
                    .collect(),
            )
            .await?;
        let compares = governed
            .iter()
            .map(|range| Compare::mod_revision_prefix(range, CompareOp::Less, set.revision + 1))
            .collect();
        let mut out = Vec::new();
        for kv in set.results.into_iter().flatten() {
            let Some(path) = self.keys.path_of_pointer(&kv.key) else {
                continue;
            };
            if !applies(prefix, &path) {
                continue;
            }
            let pointer: Pointer = records::decode_json(&kv.key, &kv.value)?;
            if pointer.deleted {
                continue;
            }
            let Some(entry) = self.version(&path, pointer.version).await? else {
                continue;
            };
            let Some(value) = entry.value.as_ref().map(ParsedValue::structured) else {
                continue;
            };
            out.extend(
                schema
                    .violations(value)
                    .into_iter()
                    .map(|v| (path.clone(), v)),
            );
            if out.len() > setpoint_core::validate::MAX_VIOLATIONS {
                // Enough to refuse the schema and show why; the answer stays small.
                break;
            }
        }
        Ok((out, compares))
    }
}
