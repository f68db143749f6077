//! Notifies a webhook of each alert that fires or resolves: one JSON POST per change,
//! `{"status": "firing" | "resolved", "alert": {…}, "resolved_at"?, "writer"}`, retried with
//! doubling backoff until a 2xx or the last attempt. Changes wait in a bounded queue; past it
//! they are dropped and counted (`setpoint_alert_notifications_total{outcome="dropped"}`), so a
//! dead receiver never holds the writer's memory or its evaluation. One sender, so a receiver
//! sees changes in the order they happened.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use setpoint_core::alerts::Change;
use tokio::sync::mpsc;

use super::{AlertBody, AlertConfig, rfc3339};
use crate::metrics::Metrics;

/// What the webhook receives.
#[derive(Debug, Serialize)]
pub struct Notification {
    /// `firing` or `resolved`.
    pub status: &'static str,
    pub alert: AlertBody,
    /// When it resolved (RFC 3339), for `resolved`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// The writer that evaluated it.
    pub writer: String,
}

/// The queue's sending side.
pub struct Notifier {
    queue: mpsc::Sender<Notification>,
    writer: String,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the sender task for `url`.
    pub fn start(
        url: String,
        config: &AlertConfig,
        writer: String,
        metrics: Arc<Metrics>,
    ) -> (Notifier, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(config.webhook_queue.max(1));
        let sender = Sender {
            url,
            ca_pem: config.webhook_ca_pem.clone(),
            attempts: config.webhook_attempts.max(1),
            backoff: config.webhook_backoff,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(sender.run(receiver));
        (
            Notifier {
                queue,
                writer,
                metrics,
            },
            task,
        )
    }

    /// Queues `change`; drops it (counted) when the queue is full.
    pub fn send(&self, change: Change) {
        let notification = match change {
            Change::Fired(alert) => Notification {
                status: "firing",
                alert: AlertBody::of(&alert),
                resolved_at: None,
                writer: self.writer.clone(),
            },
            Change::Resolved(alert, at) => Notification {
                status: "resolved",
                alert: AlertBody::of(&alert),
                resolved_at: Some(rfc3339(at)),
                writer: self.writer.clone(),
            },
        };
        if self.queue.try_send(notification).is_err() {
            tracing::warn!("alert webhook queue is full: a notification is dropped");
            self.metrics
                .alert_notifications
                .with_label_values(&["dropped"])
                .inc();
        }
    }
}

struct Sender {
    url: String,
    ca_pem: Option<Vec<u8>>,
    attempts: u32,
    backoff: Duration,
    metrics: Arc<Metrics>,
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Sender {
    async fn run(self, mut receiver: mpsc::Receiver<Notification>) {
        let http = match setpoint_secrets::https::client_builder(self.ca_pem.as_deref()).and_then(
            |builder| {
                builder
                    .timeout(Duration::from_secs(10))
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| e.to_string())
            },
        ) {
            Ok(http) => http,
            Err(error) => {
                tracing::error!(%error, "cannot build the alert webhook's HTTP client");
                return;
            }
        };
        while let Some(notification) = receiver.recv().await {
            let outcome = if self.deliver(&http, &notification).await {
                "delivered"
            } else {
                "failed"
            };
            self.metrics
                .alert_notifications
                .with_label_values(&[outcome])
                .inc();
        }
    }

    /// POSTs until a 2xx or the last attempt; answers whether it was delivered.
    async fn deliver(&self, http: &reqwest::Client, notification: &Notification) -> bool {
        let mut wait = self.backoff;
        for attempt in 1..=self.attempts {
            let failure = match http.post(&self.url).json(notification).send().await {
                Ok(answer) if answer.status().is_success() => return true,
                Ok(answer) => format!("answered {}", answer.status()),
                Err(error) => error.to_string(),
            };
            tracing::warn!(
                url = %self.url,
                attempt,
                attempts = self.attempts,
                alert = notification.alert.name,
                status = notification.status,
                "alert webhook: {failure}"
            );
            if attempt < self.attempts {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
        false
    }
}
