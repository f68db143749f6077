//! Test-only crash points. `SETPOINT_FAULT_POINTS=name[,name…]` in the environment makes the
//! process abort when it reaches a named point, so black-box tests can crash a real writer between
//! two steps and check what the store holds afterwards. Unset (always, outside tests) a point
//! costs one load of a cached flag.

use std::sync::OnceLock;

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("SETPOINT_FAULT_POINTS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Aborts the process here when `name` is armed.
pub fn point(name: &str) {
    if armed().iter().any(|armed| armed == name) {
        eprintln!("setpoint: fault point {name} reached; aborting (SETPOINT_FAULT_POINTS)");
        std::process::abort();
    }
}
