//! The fleet's alert conditions, evaluated from what the writer knows of its edges and their
//! clients: a client gone for longer than a grace period, the connected count of an edge or of a
//! watched prefix dropping sharply, an edge whose replication link is down, an edge that stays
//! behind. [`Evaluator::evaluate`] takes one observation and the time, and answers which alerts
//! fire and which changed (fired or resolved) since the last call, so a notifier sends each
//! change once.
//!
//! Pure: time is passed in, nothing here sends or sleeps. Memory is bounded: one sliding-window
//! maximum per edge and per tracked prefix ([`MAX_PREFIXES`]), one entry per firing alert, at
//! most [`MAX_LISTED`] client ids per alert.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// A client disconnected for longer than [`AlertRules::client_gone_ms`]; one alert per edge.
pub const CLIENT_DISCONNECTED: &str = "ClientDisconnected";
/// The connected count of an edge or a prefix fell sharply within the window.
pub const CLIENTS_DROPPED: &str = "ClientsDropped";
/// An edge's replication link has been down longer than [`AlertRules::edge_down_ms`].
pub const EDGE_DISCONNECTED: &str = "EdgeDisconnected";
/// A connected edge has stayed behind the writer for longer than [`AlertRules::edge_lag_ms`].
pub const EDGE_LAGGING: &str = "EdgeLagging";

/// Every alert name, for metrics that should show 0 rather than nothing.
pub const NAMES: [&str; 4] = [
    CLIENT_DISCONNECTED,
    CLIENTS_DROPPED,
    EDGE_DISCONNECTED,
    EDGE_LAGGING,
];

/// Client ids listed per alert; the rest are counted.
pub const MAX_LISTED: usize = 100;
/// Prefixes whose connected count is tracked (the most watched first).
pub const MAX_PREFIXES: usize = 200;

/// Thresholds, in milliseconds and ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub client_gone_ms: i64,
    pub edge_down_ms: i64,
    pub edge_lag_ms: i64,
    /// How far back a drop is measured from.
    pub drop_window_ms: i64,
    /// The share of the window's peak that must be lost (0.5: half).
    pub drop_ratio: f64,
    /// Peaks smaller than this never count as a sharp drop (a few clients restarting).
    pub drop_min_peak: usize,
}

impl Default for AlertRules {
    fn default() -> AlertRules {
        AlertRules {
            client_gone_ms: 5 * 60_000,
            edge_down_ms: 60_000,
            edge_lag_ms: 60_000,
            drop_window_ms: 10 * 60_000,
            drop_ratio: 0.5,
            drop_min_peak: 5,
        }
    }
}

/// One client as the evaluator needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientState {
    pub id: String,
    pub edge: String,
    pub prefixes: Vec<String>,
    /// `None` while connected.
    pub disconnected_at_ms: Option<i64>,
}

/// One edge as the evaluator needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeState {
    pub id: String,
    pub connected: bool,
    /// When its link ended (`None` while connected).
    pub disconnected_at_ms: Option<i64>,
    /// Revisions it trails the writer's last config change.
    pub lag: i64,
}

/// A firing alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub name: &'static str,
    /// What it is about within its name: an edge id, or `edge:{id}` / `prefix:{path}` for drops.
    pub key: String,
    /// When the condition began to hold (unix ms).
    pub since_ms: i64,
    /// One sentence for a person.
    pub summary: String,
    pub edges: Vec<String>,
    /// At most [`MAX_LISTED`].
    pub clients: Vec<String>,
    /// How many clients it concerns (also those not listed).
    pub clients_total: usize,
}

/// A change to report.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Fired(Alert),
    /// The alert as it last fired, and when it stopped (unix ms).
    Resolved(Alert, i64),
}

/// Sliding-window maximum of (time, count) samples: a deque of decreasing counts.
#[derive(Debug, Default)]
struct PeakWindow {
    samples: VecDeque<(i64, usize)>,
}

impl PeakWindow {
    /// Adds `count` at `now` and answers the peak since `now - window`.
    fn push(&mut self, now: i64, count: usize, window: i64) -> usize {
        while self.samples.back().is_some_and(|&(_, c)| c <= count) {
            self.samples.pop_back();
        }
        self.samples.push_back((now, count));
        while self.samples.front().is_some_and(|&(t, _)| t < now - window) {
            self.samples.pop_front();
        }
        self.samples.front().map_or(count, |&(_, c)| c)
    }
}

/// Evaluates the rules over successive observations.
#[derive(Debug, Default)]
pub struct Evaluator {
    rules: AlertRules,
    /// Since when each connected edge has been continuously behind.
    behind_since: HashMap<String, i64>,
    peaks: HashMap<String, PeakWindow>,
    firing: BTreeMap<(&'static str, String), Alert>,
}

impl Evaluator {
    pub fn new(rules: AlertRules) -> Evaluator {
        Evaluator {
            rules,
            ..Evaluator::default()
        }
    }

    /// The alerts firing after the last evaluation, by name then key.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.firing.values()
    }

    /// Evaluates one observation at `now_ms`; answers what fired and what resolved.
    pub fn evaluate(
        &mut self,
        edges: &[EdgeState],
        clients: &[ClientState],
        now_ms: i64,
    ) -> Vec<Change> {
        let mut found: Vec<Alert> = Vec::new();
        self.edge_alerts(edges, now_ms, &mut found);
        self.disconnected_clients(clients, now_ms, &mut found);
        self.drops(clients, now_ms, &mut found);

        let mut changes = Vec::new();
        let mut current = BTreeMap::new();
        for mut alert in found {
            let key = (alert.name, alert.key.clone());
            match self.firing.remove(&key) {
                // Still firing: it keeps the moment it began.
                Some(old) => alert.since_ms = old.since_ms,
                None => changes.push(Change::Fired(alert.clone())),
            }
            current.insert(key, alert);
        }
        for (_, gone) in std::mem::replace(&mut self.firing, current) {
            changes.push(Change::Resolved(gone, now_ms));
        }
        changes
    }

    fn edge_alerts(&mut self, edges: &[EdgeState], now: i64, found: &mut Vec<Alert>) {
        let rules = &self.rules;
        for edge in edges {
            if !edge.connected {
                let down_since = edge.disconnected_at_ms.unwrap_or(now);
                if now - down_since >= rules.edge_down_ms {
                    found.push(Alert {
                        name: EDGE_DISCONNECTED,
                        key: edge.id.clone(),
                        since_ms: down_since + rules.edge_down_ms,
                        summary: format!(
                            "edge {} has had no replication link for {}",
                            edge.id,
                            duration(now - down_since)
                        ),
                        edges: vec![edge.id.clone()],
                        clients: Vec::new(),
                        clients_total: 0,
                    });
                }
            }
        }
        // Behind: connected with a lag, continuously (a moment of lag during a commit is normal).
        self.behind_since.retain(|id, _| {
            edges
                .iter()
                .any(|e| &e.id == id && e.connected && e.lag > 0)
        });
        for edge in edges.iter().filter(|e| e.connected && e.lag > 0) {
            let since = *self.behind_since.entry(edge.id.clone()).or_insert(now);
            if now - since >= self.rules.edge_lag_ms {
                found.push(Alert {
                    name: EDGE_LAGGING,
                    key: edge.id.clone(),
                    since_ms: since + self.rules.edge_lag_ms,
                    summary: format!(
                        "edge {} has been behind for {} ({} revisions now)",
                        edge.id,
                        duration(now - since),
                        edge.lag
                    ),
                    edges: vec![edge.id.clone()],
                    clients: Vec::new(),
                    clients_total: 0,
                });
            }
        }
    }

    fn disconnected_clients(&self, clients: &[ClientState], now: i64, found: &mut Vec<Alert>) {
        let gone_ms = self.rules.client_gone_ms;
        let mut by_edge: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
        for client in clients {
            if let Some(at) = client.disconnected_at_ms
                && now - at >= gone_ms
            {
                by_edge
                    .entry(&client.edge)
                    .or_default()
                    .push((&client.id, at));
            }
        }
        for (edge, gone) in by_edge {
            let earliest = gone.iter().map(|&(_, at)| at).min().unwrap_or(now);
            let mut ids: Vec<String> = gone.iter().map(|&(id, _)| id.to_owned()).collect();
            ids.sort();
            let total = ids.len();
            ids.truncate(MAX_LISTED);
            found.push(Alert {
                name: CLIENT_DISCONNECTED,
                key: edge.to_owned(),
                since_ms: earliest + gone_ms,
                summary: format!(
                    "{total} client(s) of edge {edge} disconnected for more than {}",
                    duration(gone_ms)
                ),
                edges: vec![edge.to_owned()],
                clients: ids,
                clients_total: total,
            });
        }
    }

    fn drops(&mut self, clients: &[ClientState], now: i64, found: &mut Vec<Alert>) {
        // Counted by borrowed names, keyed once per edge: no allocation per client (100,000 and
        // more, at every evaluation).
        let mut edges: HashMap<&str, usize> = HashMap::new();
        let mut prefixes: HashMap<&str, usize> = HashMap::new();
        for client in clients {
            let connected = usize::from(client.disconnected_at_ms.is_none());
            *edges.entry(&client.edge).or_default() += connected;
            for (i, prefix) in client.prefixes.iter().enumerate() {
                if !client.prefixes[..i].contains(prefix) {
                    *prefixes.entry(prefix).or_default() += connected;
                }
            }
        }
        let mut counts: BTreeMap<String, usize> = edges
            .into_iter()
            .map(|(edge, count)| (format!("edge:{edge}"), count))
            .collect();
        // The most watched prefixes (by connected count, then name), bounded — plus those
        // already tracked, so a prefix whose clients all left still shows its drop.
        let mut ranked: Vec<(&str, usize)> = prefixes.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (prefix, count) in ranked.iter().take(MAX_PREFIXES) {
            counts.insert(format!("prefix:{prefix}"), *count);
        }
        // Keys no longer seen count as 0 until their window has no peak left.
        for key in self.peaks.keys() {
            counts.entry(key.clone()).or_insert(0);
        }
        let rules = &self.rules;
        for (key, count) in &counts {
            let window = self.peaks.entry(key.clone()).or_default();
            let peak = window.push(now, *count, rules.drop_window_ms);
            let lost = peak.saturating_sub(*count);
            if peak >= rules.drop_min_peak && (lost as f64) >= rules.drop_ratio * peak as f64 {
                let (kind, subject) = key.split_once(':').unwrap_or(("edge", key.as_str()));
                found.push(Alert {
                    name: CLIENTS_DROPPED,
                    key: key.clone(),
                    since_ms: now,
                    summary: format!(
                        "connected clients of {kind} {subject} fell from {peak} to {count} within {}",
                        duration(rules.drop_window_ms)
                    ),
                    edges: if kind == "edge" {
                        vec![subject.to_owned()]
                    } else {
                        Vec::new()
                    },
                    clients: Vec::new(),
                    clients_total: lost,
                });
            }
        }
        self.peaks.retain(|key, window| {
            counts.get(key).is_some_and(|&c| c > 0) || window.samples.iter().any(|&(_, c)| c > 0)
        });
    }
}

/// `90s`, `5m`, `2h` — whichever unit reads best.
fn duration(ms: i64) -> String {
    let seconds = ms / 1000;
    if seconds < 120 {
        format!("{seconds}s")
    } else if seconds < 7200 {
        format!("{}m", seconds / 60)
    } else {
        format!("{}h", seconds / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AlertRules {
        AlertRules {
            client_gone_ms: 60_000,
            edge_down_ms: 10_000,
            edge_lag_ms: 10_000,
            drop_window_ms: 60_000,
            drop_ratio: 0.5,
            drop_min_peak: 4,
        }
    }

    fn edge(id: &str, connected: bool, down_at: Option<i64>, lag: i64) -> EdgeState {
        EdgeState {
            id: id.into(),
            connected,
            disconnected_at_ms: down_at,
            lag,
        }
    }

    fn client(id: &str, edge: &str, gone_at: Option<i64>) -> ClientState {
        ClientState {
            id: id.into(),
            edge: edge.into(),
            prefixes: vec!["/app".into()],
            disconnected_at_ms: gone_at,
        }
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Fired(a) => format!("fired {} {}", a.name, a.key),
                Change::Resolved(a, _) => format!("resolved {} {}", a.name, a.key),
            })
            .collect()
    }

    #[test]
    fn a_client_gone_past_the_grace_fires_once_per_edge_and_resolves_when_it_returns() {
        let mut ev = Evaluator::new(rules());
        let gone = [client("a", "e1", Some(1_000)), client("b", "e1", None)];
        assert!(
            ev.evaluate(&[], &gone, 30_000).is_empty(),
            "within the grace"
        );
        let fired = ev.evaluate(&[], &gone, 61_000);
        assert_eq!(names(&fired), [format!("fired {} e1", CLIENT_DISCONNECTED)]);
        let Change::Fired(alert) = &fired[0] else {
            panic!("fired")
        };
        assert_eq!(alert.clients, ["a"]);
        assert_eq!(alert.since_ms, 61_000);
        assert!(ev.evaluate(&[], &gone, 90_000).is_empty(), "no repeat");
        let back = [client("a", "e1", None), client("b", "e1", None)];
        assert_eq!(
            names(&ev.evaluate(&[], &back, 91_000)),
            [format!("resolved {} e1", CLIENT_DISCONNECTED)]
        );
        assert_eq!(ev.firing().count(), 0);
    }

    #[test]
    fn an_edge_down_past_the_grace_fires_and_a_lag_must_last() {
        let mut ev = Evaluator::new(rules());
        let down = [edge("e1", false, Some(0), 0), edge("e2", true, None, 3)];
        assert!(ev.evaluate(&down, &[], 5_000).is_empty());
        assert_eq!(
            names(&ev.evaluate(&down, &[], 10_000)),
            [format!("fired {} e1", EDGE_DISCONNECTED)]
        );
        // e2 has been behind since 5 s: it fires at 15 s, and a moment caught up resets it.
        assert_eq!(
            names(&ev.evaluate(&down, &[], 15_000)),
            [format!("fired {} e2", EDGE_LAGGING)]
        );
        let caught_up = [edge("e1", true, None, 0), edge("e2", true, None, 0)];
        let resolved = ev.evaluate(&caught_up, &[], 16_000);
        assert_eq!(resolved.len(), 2);
        let behind_again = [edge("e1", true, None, 0), edge("e2", true, None, 1)];
        assert!(ev.evaluate(&behind_again, &[], 17_000).is_empty());
        assert!(
            ev.evaluate(&behind_again, &[], 26_000).is_empty(),
            "9 s behind"
        );
        assert_eq!(ev.evaluate(&behind_again, &[], 27_000).len(), 1);
    }

    #[test]
    fn a_sharp_drop_of_an_edge_and_a_prefix_fires_and_ends_with_the_window() {
        let mut ev = Evaluator::new(rules());
        let all: Vec<ClientState> = (0..8)
            .map(|i| client(&format!("c{i}"), "e1", None))
            .collect();
        assert!(ev.evaluate(&[], &all, 0).is_empty());
        // Three of eight leave: not half.
        let mut some = all.clone();
        for c in some.iter_mut().take(3) {
            c.disconnected_at_ms = Some(1_000);
        }
        assert!(ev.evaluate(&[], &some, 1_000).is_empty());
        let mut half = all.clone();
        for c in half.iter_mut().take(4) {
            c.disconnected_at_ms = Some(2_000);
        }
        let fired = names(&ev.evaluate(&[], &half, 2_000));
        assert_eq!(
            fired,
            [
                format!("fired {} edge:e1", CLIENTS_DROPPED),
                format!("fired {} prefix:/app", CLIENTS_DROPPED)
            ]
        );
        // The peak leaves the window: the drop is history (the clients gone are another alert).
        let later = ev.evaluate(&[], &half, 62_001);
        assert!(
            later
                .iter()
                .filter(|c| matches!(c, Change::Resolved(a, _) if a.name == CLIENTS_DROPPED))
                .count()
                == 2,
            "{later:?}"
        );
    }

    #[test]
    fn small_fleets_never_count_as_a_sharp_drop() {
        let mut ev = Evaluator::new(rules());
        let three: Vec<ClientState> = (0..3)
            .map(|i| client(&format!("c{i}"), "e1", None))
            .collect();
        ev.evaluate(&[], &three, 0);
        let gone: Vec<ClientState> = three
            .iter()
            .map(|c| ClientState {
                disconnected_at_ms: Some(1),
                ..c.clone()
            })
            .collect();
        assert!(ev.evaluate(&[], &gone, 1_000).is_empty());
    }

    #[test]
    fn listed_clients_are_bounded_and_counted() {
        let mut ev = Evaluator::new(rules());
        let many: Vec<ClientState> = (0..250)
            .map(|i| client(&format!("c{i:03}"), "e1", Some(0)))
            .collect();
        let fired = ev.evaluate(&[], &many, 60_000);
        let alert = fired
            .iter()
            .find_map(|c| match c {
                Change::Fired(a) if a.name == CLIENT_DISCONNECTED => Some(a),
                _ => None,
            })
            .expect("fired");
        assert_eq!(alert.clients.len(), MAX_LISTED);
        assert_eq!(alert.clients_total, 250);
    }
}
