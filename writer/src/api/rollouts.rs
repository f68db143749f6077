//! `POST /api/config/{path}/rollout` and `/api/rollouts`: staged rollouts.
//!
//! Handlers parse and check every field (a clear 400 naming it), check the caller's rights —
//! `rollout` on the path to create or steer, `read` to see — call
//! [`crate::model::Configs`] and render the record with its current stage's health
//! ([`crate::rollouts::report`]).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use setpoint_core::auth::Action;
use setpoint_core::clients::{ClientFilter, ClientRecord};
use setpoint_core::rollout::health::{self, Report, Verdict};
use setpoint_core::rollout::{self, Canary, Health, OnUnhealthy, Stage, Status};
use setpoint_core::{ConfigPath, Format, ParsedValue};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::input::{self, Params};
use super::openapi::errors;
use crate::error::Error;
use crate::model::rollouts::{NewRollout, Steer, StoredRollout};
use setpoint_serving::params::Path;

/// Longest stage interval: 30 days.
pub const MAX_INTERVAL_MS: u64 = 30 * 86_400_000;
/// Acknowledgement timeouts from 100 ms to a day.
pub const ACK_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=86_400_000;
/// Most instances of each kind a status lists (the counts are complete).
pub const MAX_LISTED: usize = 100;

/// Body of `POST /api/config/{path}/rollout`. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutBody {
    /// The candidate: any JSON; a string for `yaml` and `text`.
    #[schema(value_type = Object)]
    pub value: Value,
    /// `json` (default), `yaml` or `text`.
    #[serde(default)]
    pub format: Option<String>,
    /// Percentages, strictly increasing, ending at 100 (e.g. `[10, 50, 100]`).
    pub stages: Vec<u64>,
    /// Time between stages when healthy: `5m`, `90s`, `250ms`, or seconds as a number. Absent
    /// or 0: stages advance only by hand.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub interval: Option<Value>,
    #[serde(default)]
    pub canary: Option<CanaryBody>,
    #[serde(default)]
    pub health: Option<HealthBody>,
    /// The id to start it under: the `rollout_id` a dry run answered, so the stages hold the
    /// instances it listed (membership hashes the id). Absent: a new id.
    #[serde(default)]
    pub id: Option<String>,
}

/// What starting a rollout would do (`?dry_run=true`); nothing was written.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutDraft {
    /// Always true.
    pub dry_run: bool,
    /// The id the rollout would have: pass it as `id` to start it with these stages.
    pub rollout_id: String,
    pub path: String,
    /// Connected instances watching the path (in its environment, for an override) now.
    pub matching: usize,
    /// Per stage, the instances it would hold (cumulative).
    pub stages: Vec<DraftStage>,
    /// What the candidate does once it completes (as a PUT of it would, for everyone).
    pub preview: super::preview::PreviewBody,
}

/// One stage of a draft.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftStage {
    /// 1-based.
    pub stage: usize,
    /// `canary` or `percent`.
    pub kind: &'static str,
    /// The stage's share of instances (`null` for the canary).
    pub percent: Option<u8>,
    /// How many matching instances the stage holds.
    pub count: usize,
    /// The first 100 of them, by id.
    pub instances: Vec<String>,
}

/// A first stage of named instances and/or instances matching every label.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryBody {
    #[serde(default)]
    pub instances: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// When a stage is healthy; defaults: `30s`, `0`, `rollback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthBody {
    /// Every member must acknowledge the candidate within this long (`30s`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ack_timeout: Option<Value>,
    /// The share (0 to 1) of members that may NACK or disconnect.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// `rollback` (default) or `pause`.
    #[serde(default)]
    pub on_unhealthy: Option<String>,
}

/// A rollout as the API shows it: `rollout_id`, `path`, `value`, `format`, `status`
/// (`in_progress`, `paused`, `completed`, `rolled_back`), `stage`, `stages`, `percent`,
/// `canary`, `interval_ms`, `health`, `stable_version`, `completed_version`, `created_at`,
/// `created_by`, `stage_started_at`, `next_stage_at`, `progress` (% of the matching instances
/// that applied the candidate), `matching`, `members`, `acked`, `pending`, `nacked`,
/// `disconnected`, `instances` (up to 100 of each failing kind), `healthy`, `halted`
/// (`{reason, instances}`), `transitions` (`[{at, at_ms, stage, status, reason, by}]`),
/// `version`, `revision`.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct RolloutView(pub Value);

impl utoipa::PartialSchema for RolloutView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .description(Some(
                "A rollout: its record, and its current stage as the fleet shows it",
            ))
            .into()
    }
}

impl ToSchema for RolloutView {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("RolloutView")
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutList {
    pub rollouts: Vec<RolloutView>,
}

/// `"5m"` or a number of seconds, as milliseconds.
fn duration(field: &str, value: &Value) -> Result<u64, Error> {
    match value {
        Value::String(text) => rollout::parse_duration_ms(text)
            .map_err(|e| Error::bad_request(format!("{field}: {e}"))),
        Value::Number(n) => n
            .as_u64()
            .and_then(|s| s.checked_mul(1_000))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "{field}: {n} is not a whole number of seconds (or a duration like 5m)"
                ))
            }),
        other => Err(Error::bad_request(format!(
            "{field} must be a duration like \"5m\" or a number of seconds, got {other}"
        ))),
    }
}

fn parse_body(path: ConfigPath, body: RolloutBody) -> Result<NewRollout, Error> {
    let format = body.format.as_deref().map(Format::parse).transpose()?;
    let value = ParsedValue::from_request(body.value, format)?;
    let stages = body
        .stages
        .iter()
        .map(|p| {
            u8::try_from(*p)
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| {
                    Error::bad_request(format!("stages: {p} is not a percentage from 1 to 100"))
                })
        })
        .collect::<Result<Vec<u8>, _>>()?;
    let interval_ms = match &body.interval {
        None | Some(Value::Null) => 0,
        Some(value) => duration("interval", value)?,
    };
    if interval_ms > MAX_INTERVAL_MS {
        return Err(Error::bad_request("interval: at most 30 days"));
    }
    let canary = body.canary.map(|c| Canary {
        instances: c.instances,
        labels: c.labels,
    });
    let mut health = Health::default();
    if let Some(given) = body.health {
        if let Some(value) = &given.ack_timeout {
            health.ack_timeout_ms = duration("health.ack_timeout", value)?;
            if !ACK_TIMEOUT_MS.contains(&health.ack_timeout_ms) {
                return Err(Error::bad_request("health.ack_timeout: from 100ms to 24h"));
            }
        }
        if let Some(rate) = given.max_error_rate {
            health.max_error_rate = rate;
        }
        health.on_unhealthy = match given.on_unhealthy.as_deref() {
            None | Some("rollback") => OnUnhealthy::Rollback,
            Some("pause") => OnUnhealthy::Pause,
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "health.on_unhealthy: {other:?} is not rollback or pause"
                )));
            }
        };
    }
    rollout::check_plan(&stages, canary.as_ref(), &health).map_err(Error::bad_request)?;
    if let Some(id) = &body.id {
        rollout::check_id(id).map_err(Error::bad_request)?;
    }
    Ok(NewRollout {
        path,
        value,
        stages,
        interval_ms,
        canary,
        health,
        id: body.id,
    })
}

fn rfc3339(ms: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

fn listed(ids: &[String]) -> Value {
    json!(ids.iter().take(MAX_LISTED).collect::<Vec<_>>())
}

/// A rollout as the API shows it: the record, and its current stage as the fleet shows it.
pub fn render(stored: &StoredRollout, report: &Report, completed_version: Option<u64>) -> Value {
    let r = &stored.rollout;
    let stages: Vec<Value> = r
        .stage_list()
        .iter()
        .enumerate()
        .map(|(i, stage)| match stage {
            Stage::Canary => json!({ "stage": i + 1, "canary": true }),
            Stage::Percent(p) => json!({ "stage": i + 1, "percent": p }),
        })
        .collect();
    let active = r.status.is_active();
    let healthy = match &report.verdict {
        _ if !active => r.halted.is_none(),
        Verdict::Unhealthy(_) => false,
        Verdict::Healthy | Verdict::Waiting => r.halted.is_none(),
    };
    let next_stage_at = (r.status == Status::InProgress && r.interval_ms > 0).then(|| {
        rfc3339(
            r.stage_started_ms
                .saturating_add(i64::try_from(r.interval_ms).unwrap_or(i64::MAX)),
        )
    });
    let transitions: Vec<Value> = r
        .transitions
        .iter()
        .map(|t| {
            json!({
                "at": rfc3339(t.at_ms),
                "at_ms": t.at_ms,
                "stage": t.stage,
                "status": t.status.as_str(),
                "reason": t.reason,
                "by": t.by,
            })
        })
        .collect();
    json!({
        "rollout_id": r.id,
        "path": r.path,
        "value": r.value,
        "format": r.format.as_str(),
        "status": r.status.as_str(),
        "stage": r.stage,
        "stages": stages,
        "percent": r.percent(),
        "canary": r.canary,
        "interval_ms": r.interval_ms,
        "health": {
            "ack_timeout_ms": r.health.ack_timeout_ms,
            "max_error_rate": r.health.max_error_rate,
            "on_unhealthy": match r.health.on_unhealthy {
                OnUnhealthy::Rollback => "rollback",
                OnUnhealthy::Pause => "pause",
            },
        },
        "stable_version": r.stable_version,
        "completed_version": completed_version,
        "created_at": rfc3339(r.created_at_ms),
        "created_by": r.created_by,
        "stage_started_at": rfc3339(r.stage_started_ms),
        "next_stage_at": next_stage_at,
        "progress": if active { report.progress } else if r.status == Status::Completed { 100.0 } else { 0.0 },
        "matching": report.matching,
        "members": report.members.len(),
        "acked": report.acked.len(),
        "pending": report.pending.len(),
        "nacked": report.nacked.len(),
        "disconnected": report.disconnected.len(),
        "instances": {
            "pending": listed(&report.pending),
            "nacked": listed(&report.nacked),
            "disconnected": listed(&report.disconnected),
        },
        "healthy": healthy,
        "halted": r.halted,
        "transitions": transitions,
        "version": stored.version,
        "revision": stored.revision,
    })
}

async fn rendered(state: &AppState, stored: &StoredRollout) -> Result<RolloutView, Error> {
    let report = if stored.rollout.status.is_active() {
        crate::rollouts::report(&state.configs, state.replication.as_deref(), stored).await?
    } else {
        // An ended rollout has no stage to judge: no store reads, no fleet.
        setpoint_core::rollout::health::assess(
            &stored.rollout,
            &[],
            &[],
            setpoint_core::rollout::health::Window {
                since_ms: stored.rollout.stage_started_ms,
                since_revision: stored.revision,
            },
            stored.rollout.stage_started_ms,
        )
    };
    let completed_version = state.configs.completed_version(stored).await?;
    Ok(RolloutView(render(stored, &report, completed_version)))
}

/// `POST /api/config/{path}/rollout` (the only POST under `/api/config/`); with
/// `?dry_run=true`, what starting it would do: the id, each stage's instances among the
/// connected clients, and the candidate's impact preview — nothing written.
#[utoipa::path(post, path = "/api/config/{path}/rollout", tag = "rollouts",
    params(("path" = String, Path, description = "The config path to roll out, e.g. myapp/database/host"),
           ("dry_run" = Option<bool>, Query, description = "Answer the id, each stage's instances and the impact preview, and start nothing")),
    request_body = RolloutBody,
    responses((status = 201, description = "Started, in its first stage", body = RolloutView),
              (status = 200, description = "With dry_run: what starting it would do; nothing written", body = RolloutDraft),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::TooLarge, errors::Unprocessable, errors::Unavailable))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let dry_run = Params::new(query).flag("dry_run")?;
    let trimmed = raw.trim_end_matches('/');
    let Some(base) = trimmed.strip_suffix("/rollout") else {
        return Err(Error::not_found(format!(
            "no route for POST /api/config/{raw}; did you mean POST /api/config/{trimmed}/rollout?"
        )));
    };
    let path = ConfigPath::parse(base)?;
    caller.require(&state, &path, Action::Rollout).await?;
    let body: RolloutBody = input::json_body(body)?;
    let new = parse_body(path, body)?;
    if dry_run {
        return Ok(Json(draft(&state, &caller, new).await?).into_response());
    }
    let stored = state.configs.create_rollout(new, &caller.actor).await?;
    let body = rendered(&state, &stored).await?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The dry run of starting `new`: refused as creation would be, else the draft's stages over
/// the connected clients an edge would deliver the candidate to, and the candidate's preview.
async fn draft(state: &AppState, caller: &Caller, new: NewRollout) -> Result<RolloutDraft, Error> {
    let change = new.candidate_change();
    let stored = state.configs.draft_rollout(new, &caller.actor).await?;
    let rollout = &stored.rollout;
    let (matching, members) = match &state.replication {
        Some(replication) => {
            let snapshot = replication.feed().snapshot();
            replication.clients(|fleet| {
                let clients: Vec<&ClientRecord> = fleet
                    .list(&ClientFilter::default())
                    .into_iter()
                    .filter(|c| rollout.changes_view(&snapshot, c.env.as_deref()))
                    .collect();
                health::stage_members(rollout, &clients)
            })
        }
        None => health::stage_members(rollout, &[]),
    };
    let stages = rollout
        .stage_list()
        .into_iter()
        .zip(members)
        .enumerate()
        .map(|(index, (stage, mut instances))| {
            let count = instances.len();
            instances.truncate(MAX_LISTED);
            let (kind, percent) = match stage {
                Stage::Canary => ("canary", None),
                Stage::Percent(p) => ("percent", Some(p)),
            };
            DraftStage {
                stage: index + 1,
                kind,
                percent,
                count,
                instances,
            }
        })
        .collect();
    let preview = super::preview::answer(state, caller, &[change], false).await?;
    Ok(RolloutDraft {
        dry_run: true,
        rollout_id: rollout.id.clone(),
        path: rollout.path.clone(),
        matching,
        stages,
        preview: preview.0,
    })
}

/// Rollouts the caller may read, newest first (`?status=in_progress|paused|completed|rolled_back&path=`).
#[utoipa::path(get, path = "/api/rollouts", tag = "rollouts",
    params(("status" = Option<String>, Query, description = "Only this status"),
           ("path" = Option<String>, Query, description = "Only rollouts of this path")),
    responses((status = 200, description = "Rollouts of paths the caller may read", body = RolloutList),
              errors::BadRequest, errors::Unavailable))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<RolloutList>, Error> {
    let mut status = None;
    let mut path = None;
    for (name, value) in &params {
        match name.as_str() {
            "status" => {
                status = Some(Status::parse(value).ok_or_else(|| {
                    Error::bad_request(format!(
                        "status={value:?} is not in_progress, paused, completed or rolled_back"
                    ))
                })?);
            }
            "path" => {
                path = Some(ConfigPath::parse(value).map_err(|e| {
                    Error::bad_request(format!("path={value:?} is not a path: {e}"))
                })?);
            }
            other => {
                return Err(Error::bad_request(format!(
                    "unknown query parameter {other:?} (status, path)"
                )));
            }
        }
    }
    let all = state.configs.rollouts(status, path.as_ref()).await?;
    let mut out = Vec::new();
    for stored in all {
        let visible =
            ConfigPath::parse(&stored.rollout.path).is_ok_and(|p| caller.may(&p, Action::Read));
        if visible {
            out.push(rendered(&state, &stored).await?);
        }
    }
    Ok(Json(RolloutList { rollouts: out }))
}

/// One rollout: stage, percent, progress, members, acked, nacked, healthy, halted, transitions.
#[utoipa::path(get, path = "/api/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id (roll_…)")),
    responses((status = 200, description = "The rollout and its current stage's health", body = RolloutView),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, Error> {
    let stored = state.configs.rollout(&id).await?;
    caller
        .require(
            &state,
            &ConfigPath::parse(&stored.rollout.path)?,
            Action::Read,
        )
        .await?;
    Ok(Json(rendered(&state, &stored).await?))
}

/// `advance` (past the last stage: complete), `pause`, `resume` or `rollback`.
#[utoipa::path(post, path = "/api/rollouts/{id}/{action}", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id (roll_…)"),
           ("action" = String, Path, description = "advance, pause, resume or rollback")),
    responses((status = 200, description = "The rollout after the transition", body = RolloutView),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unprocessable, errors::Unavailable))]
pub async fn steer(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<RolloutView>, Error> {
    let steer = Steer::parse(&action).ok_or_else(|| {
        Error::not_found(format!(
            "no rollout action {action:?} (advance, pause, resume, rollback)"
        ))
    })?;
    let stored = state.configs.rollout(&id).await?;
    caller
        .require(
            &state,
            &ConfigPath::parse(&stored.rollout.path)?,
            Action::Rollout,
        )
        .await?;
    let stored = state
        .configs
        .steer_rollout(&id, steer, &caller.actor)
        .await?;
    Ok(Json(rendered(&state, &stored).await?))
}
