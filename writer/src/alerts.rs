//! The writer's own alerting, for a team without Prometheus: every [`AlertConfig::interval`]
//! (and on each `GET /api/alerts`) the fleet view — the replication link's edges and the clients
//! they report — goes through `setpoint_core::alerts`' rules; what fired or resolved goes to the
//! webhook ([`webhook`]), if one is configured, and to `setpoint_alerts_firing{alert}`.
//!
//! Owns the evaluator's state and the notifier's queue; it reads the fleet only through
//! [`Replication::alert_inputs`] and never writes to the store. The view is per replica (the
//! edges connected to this writer, and those below them that relays report), like
//! `/api/clients`.

pub mod webhook;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use setpoint_core::alerts::{Alert, AlertRules, Change, Evaluator, NAMES};

use crate::metrics::Metrics;
use crate::replication::{Replication, unix_ms};

/// The writer's alerting: thresholds, how often, and where to notify.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    pub rules: AlertRules,
    /// How often the rules are evaluated in the background.
    pub interval: Duration,
    /// Where firing and resolved alerts are POSTed as JSON (`None`: nowhere).
    pub webhook: Option<String>,
    /// Notifications waiting for the webhook at most; more are dropped and counted.
    pub webhook_queue: usize,
    /// Attempts per notification (the first included), with doubling backoff from
    /// [`AlertConfig::webhook_backoff`].
    pub webhook_attempts: u32,
    pub webhook_backoff: Duration,
    /// PEM roots trusted besides the system's for an `https://` webhook (a private CA).
    pub webhook_ca_pem: Option<Vec<u8>>,
}

impl Default for AlertConfig {
    fn default() -> AlertConfig {
        AlertConfig {
            rules: AlertRules::default(),
            interval: Duration::from_secs(5),
            webhook: None,
            webhook_queue: 1000,
            webhook_attempts: 6,
            webhook_backoff: Duration::from_millis(500),
            webhook_ca_pem: None,
        }
    }
}

/// The evaluator and where its changes go.
pub struct Alerts {
    evaluator: Mutex<Evaluator>,
    replication: Arc<Replication>,
    metrics: Arc<Metrics>,
    notifier: Option<webhook::Notifier>,
}

impl Alerts {
    /// Starts the background evaluation (and the webhook sender, if configured); both end
    /// when the returned handles are aborted.
    pub fn start(
        config: &AlertConfig,
        replication: Arc<Replication>,
        metrics: Arc<Metrics>,
        writer_id: String,
    ) -> (Arc<Alerts>, Vec<tokio::task::JoinHandle<()>>) {
        let mut tasks = Vec::new();
        let notifier = config.webhook.as_ref().map(|url| {
            let (notifier, task) =
                webhook::Notifier::start(url.clone(), config, writer_id, metrics.clone());
            tasks.push(task);
            notifier
        });
        let alerts = Arc::new(Alerts {
            evaluator: Mutex::new(Evaluator::new(config.rules.clone())),
            replication,
            metrics,
            notifier,
        });
        let interval = config.interval.max(Duration::from_millis(100));
        let looping = alerts.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                looping.evaluate();
            }
        }));
        (alerts, tasks)
    }

    fn lock(&self) -> MutexGuard<'_, Evaluator> {
        self.evaluator.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluates the rules now, notifies what changed, and answers the firing alerts.
    pub fn evaluate(&self) -> Vec<Alert> {
        let (edges, clients) = self.replication.alert_inputs();
        let mut evaluator = self.lock();
        let changes = evaluator.evaluate(&edges, &clients, unix_ms());
        let firing: Vec<Alert> = evaluator.firing().cloned().collect();
        // Notified under the lock, so changes reach the queue in the order they happened.
        for change in changes {
            match &change {
                Change::Fired(alert) => {
                    tracing::warn!(alert = alert.name, key = %alert.key, "{}", alert.summary);
                }
                Change::Resolved(alert, _) => {
                    tracing::info!(alert = alert.name, key = %alert.key, "resolved");
                }
            }
            if let Some(notifier) = &self.notifier {
                notifier.send(change);
            }
        }
        drop(evaluator);
        for name in NAMES {
            let n = firing.iter().filter(|a| a.name == name).count();
            self.metrics
                .alerts_firing
                .with_label_values(&[name])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        firing
    }
}

/// RFC 3339 of unix milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One alert as the API and the webhook show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AlertBody {
    /// `ClientDisconnected`, `ClientsDropped`, `EdgeDisconnected` or `EdgeLagging`.
    pub name: &'static str,
    /// What it is about within its name: an edge id, or `edge:{id}` / `prefix:{path}`.
    pub key: String,
    /// When the condition began to hold (RFC 3339).
    pub since: String,
    /// One sentence for a person.
    pub summary: String,
    pub edges: Vec<String>,
    /// The clients concerned (at most 100; `clients_total` counts them all).
    pub clients: Vec<String>,
    pub clients_total: usize,
}

impl AlertBody {
    pub fn of(alert: &Alert) -> AlertBody {
        AlertBody {
            name: alert.name,
            key: alert.key.clone(),
            since: rfc3339(alert.since_ms),
            summary: alert.summary.clone(),
            edges: alert.edges.clone(),
            clients: alert.clients.clone(),
            clients_total: alert.clients_total,
        }
    }
}
