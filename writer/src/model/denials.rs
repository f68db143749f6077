//! Denied attempts reach the audit log at a bounded rate.
//!
//! Every refused request used to write its own audit record: 20,000 403s grew etcd by 50 MB in
//! 37 s, and etcd's default 2 GiB quota would fill within the hour — a denial of service by
//! being denied. Now the first denial of a (caller, source, action, path) in a minute is
//! recorded as it happens; the repeats are counted and recorded once, as one summary record
//! (`detail: {"repeated": N, "first": …, "last": …}`), when the minute is over. At most
//! [`RECORDS_PER_MINUTE`] denial records are written per minute in all, and at most
//! [`MAX_KEYS`] distinct denials are tracked; past either, denials are folded into one summary
//! per minute (caller and path not kept). Successful changes never go through here: their
//! record is part of their own commit.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Actor;

/// Denial records (first occurrences and summaries) written per minute, at most.
pub const RECORDS_PER_MINUTE: u32 = 60;
/// Distinct denials tracked within a minute.
pub const MAX_KEYS: usize = 1_000;

/// One denial, as the audit record will name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Denial {
    pub actor: Option<String>,
    pub source: Option<String>,
    pub action: String,
    pub path: Option<String>,
}

/// Repeats of one denial within the current minute, not yet recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeats {
    pub denial: Denial,
    pub count: u64,
    /// Unix seconds of the first and last repeat.
    pub first: i64,
    pub last: i64,
}

/// What to do with one denial now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Write this denial's own record.
    pub record: bool,
    /// Summaries of the minute that just ended, to write first.
    pub summaries: Vec<Repeats>,
}

#[derive(Default)]
struct Window {
    minute: i64,
    written: u32,
    /// Denials seen this minute, with their repeats since the first.
    seen: HashMap<Denial, Option<Repeats>>,
    /// Denials past the key or record bound, folded together.
    overflow: Option<Repeats>,
}

#[derive(Default)]
pub struct DenialLimiter {
    window: Mutex<Window>,
}

impl DenialLimiter {
    /// Decides for one denial at `now` (unix seconds).
    pub fn admit(&self, denial: Denial, now: i64) -> Verdict {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let minute = now.div_euclid(60);
        let mut summaries = Vec::new();
        if window.minute != minute {
            let ended = std::mem::take(&mut *window);
            summaries = ended.seen.into_values().flatten().collect();
            summaries.extend(ended.overflow);
            summaries.sort_by_key(|r| r.first);
            if summaries.len() > RECORDS_PER_MINUTE as usize {
                let folded = summaries.split_off(RECORDS_PER_MINUTE as usize - 1);
                summaries.push(fold(folded));
            }
            window.minute = minute;
            window.written = summaries.len() as u32;
        }
        let repeat = |entry: &mut Option<Repeats>, denial: Denial| match entry {
            Some(repeats) => {
                repeats.count += 1;
                repeats.last = now;
            }
            None => {
                *entry = Some(Repeats {
                    denial,
                    count: 1,
                    first: now,
                    last: now,
                })
            }
        };
        let room = window.seen.len() < MAX_KEYS && window.written < RECORDS_PER_MINUTE;
        let window = &mut *window;
        let record = if let Some(entry) = window.seen.get_mut(&denial) {
            repeat(entry, denial);
            false
        } else if room {
            window.seen.insert(denial, None);
            window.written += 1;
            true
        } else {
            let overflow = Denial {
                actor: None,
                source: None,
                action: "denied.other".to_owned(),
                path: None,
            };
            repeat(&mut window.overflow, overflow);
            false
        };
        Verdict { record, summaries }
    }
}

fn fold(many: Vec<Repeats>) -> Repeats {
    let first = many.iter().map(|r| r.first).min().unwrap_or_default();
    let last = many.iter().map(|r| r.last).max().unwrap_or_default();
    Repeats {
        denial: Denial {
            actor: None,
            source: None,
            action: "denied.other".to_owned(),
            path: None,
        },
        count: many.iter().map(|r| r.count).sum(),
        first,
        last,
    }
}

impl Denial {
    pub fn of(actor: &Actor, action: &str, path: Option<&str>) -> Denial {
        Denial {
            actor: actor.name.clone(),
            source: actor.source.clone(),
            action: action.to_owned(),
            path: path.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(actor: &str, path: &str) -> Denial {
        Denial {
            actor: Some(actor.to_owned()),
            source: None,
            action: "config.put".to_owned(),
            path: Some(path.to_owned()),
        }
    }

    #[test]
    fn repeats_in_a_minute_become_one_summary() {
        let limiter = DenialLimiter::default();
        let first = limiter.admit(denial("eve", "/a"), 120);
        assert!(first.record && first.summaries.is_empty());
        for second in 121..170 {
            let again = limiter.admit(denial("eve", "/a"), second);
            assert!(!again.record && again.summaries.is_empty());
        }
        // Another caller is recorded on its own.
        assert!(limiter.admit(denial("mallory", "/a"), 150).record);
        let next_minute = limiter.admit(denial("eve", "/a"), 185);
        assert!(next_minute.record, "a new minute records it again");
        assert_eq!(next_minute.summaries.len(), 1);
        let summary = &next_minute.summaries[0];
        assert_eq!((summary.count, summary.first, summary.last), (49, 121, 169));
    }

    #[test]
    fn records_per_minute_are_bounded_whatever_the_callers() {
        let limiter = DenialLimiter::default();
        let mut written = 0;
        for n in 0..20_000 {
            if limiter
                .admit(denial(&format!("caller{n}"), "/x"), 60)
                .record
            {
                written += 1;
            }
        }
        assert_eq!(written, RECORDS_PER_MINUTE);
        let next = limiter.admit(denial("late", "/x"), 125);
        assert_eq!(next.summaries.len(), 1, "all folded: {:?}", next.summaries);
        assert_eq!(
            next.summaries[0].count,
            20_000 - u64::from(RECORDS_PER_MINUTE)
        );
    }
}
