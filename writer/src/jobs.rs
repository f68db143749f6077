//! The writer's leader-only jobs: bootstrap (default environments, the admin account), the
//! audit sealer, history retention and store compaction, and the rollouts' stage clock. They write, so they run only while
//! this writer leads — started with each term, aborted when it ends — and never on a standby
//! (whose transactions the fence refuses anyway). Also keeps the leadership metrics.

use std::sync::Arc;
use std::time::Duration;

use crate::leader::{Leadership, Role};
use crate::metrics::Metrics;
use crate::model::Configs;
use crate::{RunError, WriterConfig, compaction_loop, startup_with_retries, store};

/// Creates the default environments and the admin account when the store has none (each
/// only once per store), retrying store outages for a while.
pub(crate) async fn bootstrap(configs: &Configs, config: &WriterConfig) -> Result<(), RunError> {
    let location = startup_with_retries(|| async {
        configs
            .ensure_environments(&config.default_environments)
            .await
            .map_err(RunError::Environments)?;
        configs
            .bootstrap_admin(config.admin_key_file.as_deref(), &config.bootstrap_key_path)
            .await
            .map_err(RunError::Bootstrap)
    })
    .await?;
    if let Some(location) = location {
        tracing::info!(
            file = %location.display(),
            "created the admin account; its API key is in this file (readable by its owner only)"
        );
    }
    Ok(())
}

/// Runs the jobs that write — bootstrap, the audit sealer, retention and compaction — only
/// while this writer leads: started on each new term, aborted when it ends. Also keeps the
/// leadership metrics. `bootstrapped` is the term whose bootstrap `Writer::start` already did.
pub(crate) async fn leader_jobs(
    leadership: Arc<Leadership>,
    configs: Arc<Configs>,
    replication: Option<Arc<crate::replication::Replication>>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    mut bootstrapped: Option<Option<store::Revision>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut status = leadership.subscribe();
    let mut running: Option<(Option<store::Revision>, Vec<tokio::task::JoinHandle<()>>)> = None;
    let mut was_leader = false;
    loop {
        let current = status.borrow_and_update().clone();
        let leading = current.role() == Role::Leader;
        let term = current.term_revision();
        if leading != was_leader {
            metrics.leadership_changes.inc();
            was_leader = leading;
        }
        metrics.leader.set(i64::from(leading));
        let same_term = running.as_ref().is_some_and(|(t, _)| *t == term);
        if (!leading || !same_term)
            && let Some((_, jobs)) = running.take()
        {
            for job in &jobs {
                job.abort();
            }
            tracing::info!("not leading: stopped the leader's jobs");
        }
        if leading && running.is_none() {
            let mut jobs = Vec::new();
            if bootstrapped.take() != Some(term) {
                let (configs, config) = (configs.clone(), config.clone());
                jobs.push(tokio::spawn(async move {
                    if let Err(err) = bootstrap(&configs, &config).await {
                        tracing::error!(%err, "bootstrap as the new leader failed");
                    }
                }));
            }
            // A record is sealed once it is older than any commit can take (the store timeout
            // bounds it), so none can appear behind the sealer.
            let settle = (config.store_timeout * 2).max(Duration::from_secs(1));
            jobs.push(tokio::spawn(configs.audit().clone().sealer(
                configs.store().clone(),
                settle,
                config.audit_seal_interval,
            )));
            jobs.push(tokio::spawn(compaction_loop(
                configs.clone(),
                metrics.clone(),
                config.clone(),
            )));
            jobs.push(tokio::spawn(crate::rollouts::stage_clock(
                configs.clone(),
                replication.clone(),
            )));
            running = Some((term, jobs));
        }
        // A term ends by a status change, or silently when its lease runs out: wake for that.
        let expiry = async {
            if leading {
                tokio::time::sleep(Duration::from_millis(250)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = expiry => {}
            _ = &mut stop => break,
        }
    }
    if let Some((_, jobs)) = running {
        for job in &jobs {
            job.abort();
        }
        for job in jobs {
            let _ = job.await;
        }
    }
}

/// Verifies the audit chain every `every` (on every replica: it only reads), so a broken chain
/// shows in `setpoint_audit_chain_problems` without anyone asking.
pub(crate) async fn verify_audit_chain(
    configs: Arc<Configs>,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = configs.audit_verify().await;
        metrics.audit_verified(&result);
        match result {
            Ok(report) if !report.ok => {
                tracing::error!(
                    problems = report.problems.len(),
                    "the audit chain does not verify"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot verify the audit chain"),
        }
    }
}
