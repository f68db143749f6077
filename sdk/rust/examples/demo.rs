//! A runnable tour of the SDK: connect, read, watch, resolve.
//!
//! ```sh
//! setpoint dev &                                   # http://127.0.0.1:8000
//! curl -X PUT http://127.0.0.1:8000/api/config/myapp/database/host -d '{"value": "localhost"}'
//! cargo run -p setpoint-sdk --example demo -- 127.0.0.1:8000
//! curl -X PUT http://127.0.0.1:8000/api/config/myapp/database/host -d '{"value": "new-host"}'
//! ```
//!
//! The demo prints the host, then every change under `/myapp` until Ctrl-C.

use std::time::Duration;

use setpoint_sdk::{Client, Error, Event, Options};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let client = Client::new(
        &address,
        Options {
            environment: std::env::var("SETPOINT_ENV").ok(),
            prefixes: vec!["/myapp".into()],
            cache_path: Some(std::env::temp_dir().join("setpoint-demo-cache.json")),
            token: std::env::var("SETPOINT_TOKEN").ok(),
            ..Options::default()
        },
    )?;
    if let Err(error) = client.wait_ready(Duration::from_secs(5)).await {
        // Not fatal: with a cache file from an earlier run the client serves that (stale).
        eprintln!("not synced yet ({error}); stale = {}", client.is_stale());
    }
    match client.get("/myapp/database/host") {
        Ok(value) => println!("database host: {} (version {})", value.value, value.version),
        Err(error) => println!("database host: {error}"),
    }
    let _watch = client.watch("/myapp", |event: &Event| {
        match &event.value {
            Some(value) => println!(
                "{} = {value} (was {:?}, version {})",
                event.path, event.old_value, event.version
            ),
            None => println!("{} deleted (was {:?})", event.path, event.old_value),
        }
        Ok::<(), String>(())
    })?;
    // Secrets are never pushed; read them on demand.
    match client.resolve("/myapp/database").await {
        Ok(resolved) => println!("resolved /myapp/database: {resolved}"),
        Err(error) => println!("resolve /myapp/database: {error}"),
    }
    let _ = tokio::signal::ctrl_c().await;
    client.close().await;
    Ok(())
}
