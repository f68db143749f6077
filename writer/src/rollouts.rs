//! The stage clock: a leader-only job that moves active rollouts by time and health.
//!
//! Every tick (about twice a second) it reads the active rollouts (the guard keys), and for
//! each one in progress judges its current stage from the fleet's client records
//! ([`setpoint_core::rollout::health::assess`]): unhealthy → pause or roll back by itself, with
//! `halted` saying why and which instances; healthy and `interval` elapsed since the stage began
//! → advance (past the last stage: complete). Its timers are the record's stored times, so a
//! writer restart or a failover to another replica resumes every rollout where it was. Every
//! move is a commit compared on the record's version, so a hand steering at the same moment wins
//! or loses cleanly, never both.
//!
//! It holds no state of its own and never writes anything but through
//! [`Configs::clock_step`].

use std::sync::Arc;
use std::time::Duration;

use setpoint_core::clients::{ClientFilter, ClientRecord};
use setpoint_core::rollout::health::{self, Report, Verdict, Window};
use setpoint_core::rollout::{OnUnhealthy, Status};

use crate::error::Error;
use crate::model::Configs;
use crate::model::rollouts::{Steer, StoredRollout};
use crate::replication::Replication;

/// How often the clock looks at the active rollouts.
pub const TICK: Duration = Duration::from_millis(500);

/// Most instances a halt names in the record (the reason gives the count).
pub const MAX_HALT_INSTANCES: usize = 100;

/// The current stage of `stored` as the fleet shows it now.
pub async fn report(
    configs: &Configs,
    replication: Option<&Replication>,
    stored: &StoredRollout,
) -> Result<Report, Error> {
    let rollout = &stored.rollout;
    let (stages, since_revision) = configs.stage_revisions(stored).await?;
    let window = Window {
        since_ms: rollout.stage_started_ms,
        since_revision,
    };
    let now = configs.unix_now_ms();
    let assess = |clients: &[&ClientRecord]| health::assess(rollout, clients, &stages, window, now);
    Ok(match replication {
        Some(replication) => {
            // Only the clients an edge delivers the candidate to can acknowledge it.
            let snapshot = replication.feed().snapshot();
            replication.clients(|fleet| {
                let clients: Vec<&ClientRecord> = fleet
                    .list(&ClientFilter::default())
                    .into_iter()
                    .filter(|c| rollout.changes_view(&snapshot, c.env.as_deref()))
                    .collect();
                assess(&clients)
            })
        }
        None => assess(&[]),
    })
}

/// One look at every active rollout.
pub async fn tick(configs: &Configs, replication: Option<&Replication>) -> Result<(), Error> {
    for id in configs.active_rollouts().await? {
        let stored = configs.rollout(&id).await?;
        if stored.rollout.status != Status::InProgress {
            continue;
        }
        let report = report(configs, replication, &stored).await?;
        let rollout = &stored.rollout;
        let moved = match report.verdict {
            Verdict::Unhealthy(mut halt) => {
                halt.instances.truncate(MAX_HALT_INSTANCES);
                let steer = match rollout.health.on_unhealthy {
                    OnUnhealthy::Pause => Steer::Pause,
                    OnUnhealthy::Rollback => Steer::Rollback,
                };
                tracing::warn!(rollout = %rollout.id, reason = %halt.reason, "rollout halted");
                configs.clock_step(&stored, steer, Some(halt)).await
            }
            Verdict::Healthy if due(rollout, configs.unix_now_ms()) => {
                configs.clock_step(&stored, Steer::Advance, None).await
            }
            Verdict::Healthy | Verdict::Waiting => Ok(None),
        };
        if let Err(err) = moved {
            tracing::warn!(rollout = %rollout.id, %err, "the stage clock could not move a rollout");
        }
    }
    Ok(())
}

/// Whether the stage's interval has elapsed (an interval of 0: only by hand).
fn due(rollout: &setpoint_core::rollout::Rollout, now_ms: i64) -> bool {
    rollout.interval_ms > 0
        && now_ms
            >= rollout
                .stage_started_ms
                .saturating_add(i64::try_from(rollout.interval_ms).unwrap_or(i64::MAX))
}

/// Runs [`tick`] every [`TICK`] until aborted (the leader's term ends).
pub async fn stage_clock(configs: Arc<Configs>, replication: Option<Arc<Replication>>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = tick(&configs, replication.as_deref()).await {
            tracing::warn!(%err, "stage clock tick failed");
        }
    }
}
