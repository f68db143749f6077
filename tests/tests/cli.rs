//! The client verbs of the real `setpoint` binary against a real `setpoint dev`: every verb in
//! human and `-o json` form, `put` from an argument, a file and stdin, the exit codes (3 not
//! found, 4 conflict or precondition failed, 2 usage, 1 error), `watch` printing the writes
//! made while it runs and resuming across a server restart, and a rollout steered through its
//! stages to completion and another rolled back, each followed by `--wait`.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use setpoint_tests::binary::{SetpointProcess, setpoint_bin};
use setpoint_tests::wait_until;

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// `setpoint ARGS --addr <dev>`, with `stdin` piped in when given.
fn cli(dev: &SetpointProcess, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new(setpoint_bin());
    command
        .args(args)
        .env("SETPOINT_ADDR", dev.base())
        .env_remove("SETPOINT_TOKEN")
        .env_remove("SETPOINT_API_KEY_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command.spawn().expect("spawn setpoint");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn dev(dir: &Path) -> SetpointProcess {
    let data = dir.join("data");
    SetpointProcess::start(&["dev", "--data-dir", data.to_str().unwrap()], dir).await
}

#[tokio::test]
async fn config_verbs_in_human_and_json_form() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;

    // A bare word is a JSON string; JSON that parses is JSON.
    let wrote = cli(&dev, &["put", "/myapp/database/host", "db.internal"], None).ok();
    assert!(
        wrote
            .stdout
            .contains("wrote /myapp/database/host version 1"),
        "{wrote:?}"
    );
    let wrote = cli(
        &dev,
        &[
            "put",
            "myapp/database/pool",
            r#"{"min": 1, "max": 5}"#,
            "-o",
            "json",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(wrote["version"], 1);
    assert_eq!(wrote["path"], "/myapp/database/pool");

    let got = cli(&dev, &["get", "/myapp/database/host"], None).ok();
    assert_eq!(got.stdout, "db.internal\n");
    let got = cli(&dev, &["get", "/myapp/database/pool", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(got["value"]["max"], 5);
    assert_eq!(got["format"], "json");
    let detailed = cli(&dev, &["get", "/myapp/database/pool", "--detailed"], None).ok();
    assert!(detailed.stdout.contains("version:"), "{detailed:?}");
    assert!(detailed.stdout.contains("\"max\": 5"), "{detailed:?}");

    // From a YAML file (format from the extension), from stdin as text, from `-f -`.
    let file = dir.path().join("limits.yaml");
    std::fs::write(&file, "cpu: 2\nmemory: 4Gi\n").unwrap();
    cli(
        &dev,
        &["put", "/myapp/limits", "-f", file.to_str().unwrap()],
        None,
    )
    .ok();
    let got = cli(&dev, &["get", "/myapp/limits", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(got["format"], "yaml");
    assert_eq!(got["value"], "cpu: 2\nmemory: 4Gi\n");
    cli(
        &dev,
        &["put", "/myapp/motd", "--format", "text"],
        Some("hello\nworld\n"),
    )
    .ok();
    let got = cli(&dev, &["get", "/myapp/motd", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(got["format"], "text");
    assert_eq!(got["value"], "hello\nworld\n");
    cli(&dev, &["put", "/myapp/replicas", "-f", "-"], Some("3\n")).ok();
    let got = cli(&dev, &["get", "/myapp/replicas", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(got["value"], 3, "piped JSON is JSON");

    // A second version, then history and diff.
    cli(
        &dev,
        &["put", "/myapp/database/pool", r#"{"min": 2, "max": 5}"#],
        None,
    )
    .ok();
    let history = cli(&dev, &["history", "/myapp/database/pool"], None).ok();
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert!(lines[0].starts_with("VERSION"), "{history:?}");
    assert!(
        lines[1].starts_with('2') && lines[2].starts_with('1'),
        "{history:?}"
    );
    let history = cli(
        &dev,
        &["history", "/myapp/database/pool", "-o", "json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(history[0]["version"], 2);
    let diff = cli(&dev, &["diff", "/myapp/database/pool", "1", "2"], None).ok();
    assert_eq!(diff.stdout, "~ /min: 2\n");
    let diff = cli(
        &dev,
        &["diff", "/myapp/database/pool", "1", "2", "-o", "json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(diff["kind"], "json_patch");
    cli(
        &dev,
        &["put", "/myapp/motd", "--format", "text", "hello\nmars\n"],
        None,
    )
    .ok();
    let diff = cli(&dev, &["diff", "/myapp/motd", "1", "2"], None).ok();
    assert!(
        diff.stdout.contains("-world") && diff.stdout.contains("+mars"),
        "a text diff is unified: {diff:?}"
    );
    let old = cli(&dev, &["get", "/myapp/motd", "--version", "1"], None).ok();
    assert_eq!(old.stdout, "hello\nworld\n");

    // Listings: children, recursive with versions; `get` on a prefix lists too.
    let ls = cli(&dev, &["ls", "/myapp"], None).ok();
    for child in ["database", "limits", "motd", "replicas"] {
        assert!(ls.stdout.lines().any(|l| l == child), "{ls:?}");
    }
    let ls = cli(&dev, &["ls", "/myapp", "-r"], None).ok();
    assert!(ls.stdout.starts_with("PATH"), "{ls:?}");
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with("/myapp/database/pool") && l.trim_end().ends_with('2')),
        "{ls:?}"
    );
    let ls = cli(&dev, &["ls", "/myapp", "-r", "-o", "json"], None)
        .ok()
        .json();
    assert!(ls["entries"].as_array().unwrap().len() >= 5, "{ls}");
    let prefix = cli(&dev, &["get", "/myapp/database"], None).ok();
    assert!(prefix.stdout.lines().any(|l| l == "host"), "{prefix:?}");

    // Delete, then the path is gone (exit 3), its history kept.
    let deleted = cli(&dev, &["delete", "/myapp/replicas"], None).ok();
    assert!(
        deleted.stdout.contains("deleted /myapp/replicas version 2"),
        "{deleted:?}"
    );
    let gone = cli(&dev, &["get", "/myapp/replicas"], None);
    assert_eq!(gone.code, 3, "{gone:?}");
    let history = cli(&dev, &["history", "/myapp/replicas"], None).ok();
    assert!(history.stdout.contains("(deleted)"), "{history:?}");
}

#[tokio::test]
async fn exit_codes_say_not_found_conflict_usage_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;
    cli(&dev, &["put", "/myapp/flag", "true"], None).ok();

    let missing = cli(&dev, &["get", "/myapp/nothing"], None);
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(missing.stderr.contains("404"), "{missing:?}");
    let missing = cli(&dev, &["history", "/myapp/nothing"], None);
    assert_eq!(missing.code, 3, "{missing:?}");
    let missing = cli(&dev, &["env", "nowhere"], None);
    assert_eq!(missing.code, 3, "{missing:?}");

    // If-Match: a stale version is refused (4) and nothing is written; the right one passes.
    let stale = cli(
        &dev,
        &["put", "/myapp/flag", "false", "--if-match", "7"],
        None,
    );
    assert_eq!(stale.code, 4, "{stale:?}");
    assert!(stale.stderr.contains("412"), "{stale:?}");
    let still = cli(&dev, &["get", "/myapp/flag", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(still["value"], true);
    assert_eq!(still["version"], 1);
    cli(
        &dev,
        &["put", "/myapp/flag", "false", "--if-match", "1"],
        None,
    )
    .ok();
    let stale = cli(&dev, &["delete", "/myapp/flag", "--if-match", "1"], None);
    assert_eq!(stale.code, 4, "{stale:?}");
    cli(&dev, &["delete", "/myapp/flag", "--if-match", "2"], None).ok();

    // Usage: clap's own errors and the verbs' checks of their input.
    for args in [
        &["get"][..],
        &["get", "/x", "--bogus"],
        &["put", "/myapp/x", "--format", "json", "not json"],
        &["put", "/myapp/x", "1", "--schema", "{"],
        &["put", "/myapp/x"],
        &["get", "/x", "--addr", "ftp://localhost:1"],
        &["clients", "--label", "novalue"],
        &[
            "rollout",
            "start",
            "/myapp/x",
            "1",
            "--canary-label",
            "novalue",
        ],
        &["rollout", "status", "--wait"],
    ] {
        let run = cli(&dev, args, None);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?} explains itself: {run:?}");
    }

    // A validation failure names each violation; an unreachable server is an error (1).
    cli(
        &dev,
        &[
            "put",
            "/myapp/url",
            "http://ok.example",
            "--schema",
            r#"{"type": "string", "format": "uri"}"#,
        ],
        None,
    )
    .ok();
    let invalid = cli(&dev, &["put", "/myapp/url", "not a uri"], None);
    assert_eq!(invalid.code, 1, "{invalid:?}");
    assert!(
        invalid.stderr.contains("422") && invalid.stderr.contains("validation_failed"),
        "{invalid:?}"
    );
    let port = setpoint_tests::free_port();
    let unreachable = cli(
        &dev,
        &["get", "/x", "--addr", &format!("http://127.0.0.1:{port}")],
        None,
    );
    assert_eq!(unreachable.code, 1, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("cannot connect"),
        "{unreachable:?}"
    );

    // A rollout that does not exist is not found.
    let missing = cli(&dev, &["rollout", "status", "roll_nothing"], None);
    assert_eq!(missing.code, 3, "{missing:?}");
}

#[tokio::test]
async fn environments_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;

    let envs = cli(&dev, &["env"], None).ok();
    assert!(envs.stdout.starts_with("NAME"), "{envs:?}");
    for name in ["dev", "staging", "prod"] {
        assert!(envs.stdout.lines().any(|l| l.starts_with(name)), "{envs:?}");
    }
    let envs = cli(&dev, &["env", "-o", "json"], None).ok().json();
    assert_eq!(envs["environments"].as_array().unwrap().len(), 3, "{envs}");
    let prod = cli(&dev, &["env", "prod"], None).ok();
    assert!(prod.stdout.contains("name:        prod"), "{prod:?}");

    cli(&dev, &["put", "/myapp/database/host", "localhost"], None).ok();
    cli(
        &dev,
        &["put", "/env/prod/myapp/database/host", "prod-db.internal"],
        None,
    )
    .ok();
    let base = cli(&dev, &["get", "/myapp/database/host", "--env", "dev"], None).ok();
    assert_eq!(base.stdout, "localhost\n");
    let prod = cli(
        &dev,
        &["get", "/myapp/database/host", "--env", "prod"],
        None,
    )
    .ok();
    assert_eq!(prod.stdout, "prod-db.internal\n");
    let explained = cli(
        &dev,
        &["get", "/myapp/database/host", "--env", "prod", "--explain"],
        None,
    )
    .ok();
    assert!(
        explained.stdout.contains("/env/prod/myapp/database/host"),
        "provenance names the layer: {explained:?}"
    );
    let json = cli(
        &dev,
        &["get", "/myapp/database/host", "--env", "prod", "-o", "json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(json["value"], "prod-db.internal");

    let dotenv = cli(&dev, &["export", "/myapp", "--env", "prod"], None).ok();
    assert!(
        dotenv.stdout.contains("MYAPP_DATABASE_HOST=")
            && dotenv.stdout.contains("prod-db.internal"),
        "{dotenv:?}"
    );
    let configmap = cli(
        &dev,
        &[
            "export",
            "/myapp",
            "--env",
            "prod",
            "--format",
            "k8s-configmap",
            "--name",
            "myapp-config",
        ],
        None,
    )
    .ok();
    assert!(
        configmap.stdout.contains("kind: ConfigMap") && configmap.stdout.contains("myapp-config"),
        "{configmap:?}"
    );
    let unknown = cli(
        &dev,
        &["export", "/myapp", "--env", "prod", "--format", "toml"],
        None,
    );
    assert_eq!(
        unknown.code, 1,
        "an unknown format is the server's 400: {unknown:?}"
    );
}

#[tokio::test]
async fn clients_edges_and_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;
    cli(&dev, &["put", "/myapp/x", "1"], None).ok();

    // A script watching with an instance id is a client of dev's edge.
    let http = reqwest::Client::new();
    let stream = http
        .get(format!(
            "{}/api/config/myapp?watch=true&instance_id=job-7&labels=zone=eu-1",
            dev.base()
        ))
        .send()
        .await
        .unwrap();
    assert!(stream.status().is_success());
    let listed = wait_until(Duration::from_secs(20), || async {
        let run = cli(&dev, &["clients", "-o", "json"], None);
        run.code == 0 && run.stdout.contains("job-7")
    })
    .await;
    assert!(listed, "job-7 never listed");
    let table = cli(&dev, &["clients", "--label", "zone=eu-1"], None).ok();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("job-7"))
        .unwrap_or_else(|| panic!("{table:?}"));
    assert!(
        row.contains("connected") && row.contains("zone=eu-1"),
        "{row}"
    );
    let other = cli(&dev, &["clients", "--label", "zone=us-1"], None).ok();
    assert!(!other.stdout.contains("job-7"), "{other:?}");
    let one = cli(&dev, &["clients", "job-7"], None).ok();
    assert!(
        one.stdout.contains("id:") && one.stdout.contains("job-7"),
        "{one:?}"
    );
    let missing = cli(&dev, &["clients", "job-404"], None);
    assert_eq!(missing.code, 3, "{missing:?}");
    drop(stream);

    let edges = cli(&dev, &["edges"], None).ok();
    assert!(edges.stdout.starts_with("writer "), "{edges:?}");
    assert!(edges.stdout.contains("REPLICATION"), "{edges:?}");
    let edges = cli(&dev, &["edges", "-o", "json"], None).ok().json();
    assert!(
        edges["edges"].is_array() && edges["revision"].is_i64(),
        "{edges}"
    );

    let verify = cli(&dev, &["audit", "verify"], None).ok();
    assert!(verify.stdout.contains("audit chain verifies"), "{verify:?}");
    let verify = cli(&dev, &["audit", "verify", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(verify["ok"], true);
}

/// Spawns `setpoint watch ARGS` with stdout into `out`; stopped by PID on drop.
struct Watch {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Watch {
    fn start(dev_base: &str, args: &[&str], out: std::path::PathBuf) -> Watch {
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new(setpoint_bin())
            .arg("watch")
            .args(args)
            .args(["--addr", dev_base])
            .stdout(file)
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Watch { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    async fn wait_for(&self, needle: &str) -> bool {
        wait_until(Duration::from_secs(20), || async {
            self.text().contains(needle)
        })
        .await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn watch_prints_the_writes_made_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;
    let first = cli(&dev, &["put", "/myapp/color", "red", "-o", "json"], None)
        .ok()
        .json();
    let revision = first["revision"].as_i64().unwrap().to_string();

    // From the revision just written, so a write made before the stream opens is not lost.
    let human = Watch::start(
        &dev.base(),
        &["/myapp", "--from-revision", &revision],
        dir.path().join("human.out"),
    );
    let json = Watch::start(
        &dev.base(),
        &["/myapp", "--from-revision", &revision, "-o", "json"],
        dir.path().join("json.out"),
    );
    cli(&dev, &["put", "/myapp/color", "green"], None).ok();
    assert!(
        human.wait_for("/myapp/color = green (v2)").await,
        "{}",
        human.text()
    );
    assert!(json.wait_for("green").await, "{}", json.text());
    // Written after the first event was printed: the stream is live, not a replay.
    cli(&dev, &["put", "/myapp/color", "blue"], None).ok();
    cli(&dev, &["delete", "/myapp/color"], None).ok();
    assert!(
        human.wait_for("delete  /myapp/color (v4)").await,
        "{}",
        human.text()
    );
    assert!(json.wait_for("\"delete\"").await, "{}", json.text());
    cli(&dev, &["put", "/other/thing", "1"], None).ok();
    cli(&dev, &["put", "/myapp/last", "1"], None).ok();
    assert!(human.wait_for("/myapp/last").await, "{}", human.text());

    let text = human.text();
    let order: Vec<usize> = ["= green", "= blue", "delete  /myapp/color", "/myapp/last"]
        .iter()
        .map(|needle| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {text}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "in commit order: {text}"
    );
    assert!(!text.contains("/other/thing"), "only the prefix: {text}");
    assert!(
        !text.contains("= red"),
        "nothing at or before --from-revision: {text}"
    );

    let events: Vec<Value> = json
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[..3], ["update", "update", "delete"], "{events:?}");
    assert_eq!(events[0]["value"], "green");
    assert_eq!(events[0]["old_value"], "red");
}

#[tokio::test]
async fn watch_resumes_after_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev = dev(dir.path()).await;
    let addr = dev.addr.clone();
    let first = cli(&dev, &["put", "/myapp/n", "1", "-o", "json"], None)
        .ok()
        .json();
    let revision = first["revision"].as_i64().unwrap().to_string();
    let watch = Watch::start(
        &dev.base(),
        &["/myapp", "--from-revision", &revision],
        dir.path().join("watch.out"),
    );
    cli(&dev, &["put", "/myapp/n", "2"], None).ok();
    assert!(
        watch.wait_for("/myapp/n = 2 (v2)").await,
        "{}",
        watch.text()
    );

    assert!(dev.terminate().success());
    let dev = SetpointProcess::start_on(
        &["dev", "--data-dir", data.to_str().unwrap()],
        &addr,
        dir.path(),
    )
    .await;
    cli(&dev, &["put", "/myapp/n", "3"], None).ok();
    assert!(
        watch.wait_for("/myapp/n = 3 (v3)").await,
        "the watch came back on its own: {}",
        watch.text()
    );
    let text = watch.text();
    assert_eq!(
        text.matches("update  /myapp/n = 2 (v2)").count(),
        1,
        "resumed after what it printed (a reset may restate it), no update twice: {text}"
    );
}

/// `setpoint ARGS` running in the background, stdout into a file; killed by PID on drop.
struct Background {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Background {
    fn start(dev: &SetpointProcess, args: &[&str], out: std::path::PathBuf) -> Background {
        let child = Command::new(setpoint_bin())
            .args(args)
            .args(["--addr", &dev.base()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Background { child, out }
    }

    /// Its exit code and stdout, once it exits (within 20 s).
    async fn finished(&mut self) -> (i32, String) {
        let mut code = None;
        let exited = wait_until(Duration::from_secs(20), || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            let done = code.is_some();
            async move { done }
        })
        .await;
        assert!(
            exited,
            "still running: {}",
            std::fs::read_to_string(&self.out).unwrap_or_default()
        );
        (code.unwrap(), std::fs::read_to_string(&self.out).unwrap())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn rollout_verbs_steer_a_rollout_to_completion_and_roll_another_back() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;
    cli(&dev, &["put", "/myapp/feature", "off"], None).ok();

    // A dry run starts nothing and names the id; starting under it keeps that id.
    let draft = cli(
        &dev,
        &[
            "rollout",
            "start",
            "/myapp/feature",
            "on",
            "--stages",
            "10,50,100",
            "--dry-run",
        ],
        None,
    )
    .ok();
    assert!(
        draft.stdout.starts_with("would start rollout roll_"),
        "{draft:?}"
    );
    assert!(draft.stdout.contains("stage 3 (100 %)"), "{draft:?}");
    assert!(draft.stdout.contains("\"off\" -> \"on\""), "{draft:?}");
    let drafted = cli(
        &dev,
        &[
            "rollout",
            "start",
            "/myapp/feature",
            "on",
            "--dry-run",
            "-o",
            "json",
        ],
        None,
    )
    .ok()
    .json();
    let drafted_id = drafted["rollout_id"].as_str().unwrap().to_owned();
    let none = cli(&dev, &["rollout", "status", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(none["rollouts"], serde_json::json!([]), "{none}");

    // No --interval: stages move only by hand, so the test decides every step.
    let started = cli(
        &dev,
        &[
            "rollout",
            "start",
            "/myapp/feature",
            "on",
            "--stages",
            "10,50,100",
            "--id",
            &drafted_id,
        ],
        None,
    )
    .ok();
    assert!(
        started.stdout.starts_with("started rollout roll_"),
        "{started:?}"
    );
    assert!(started.stdout.contains("stage 1/3 (10%)"), "{started:?}");
    let list = cli(&dev, &["rollout", "status", "-o", "json"], None)
        .ok()
        .json();
    let id = list["rollouts"][0]["rollout_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id, drafted_id, "started under the dry run's id");
    let table = cli(
        &dev,
        &["rollout", "status", "--status", "in_progress"],
        None,
    )
    .ok();
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("in_progress")),
        "{table:?}"
    );
    let status = cli(&dev, &["rollout", "status", &id], None).ok();
    assert!(
        status.stdout.contains("in_progress  stage 1/3 (10%)"),
        "{status:?}"
    );
    assert!(status.stdout.contains("progress"), "{status:?}");

    // One active rollout per path; a plain write under it is a conflict too.
    let second = cli(&dev, &["rollout", "start", "/myapp/feature", "maybe"], None);
    assert_eq!(second.code, 4, "{second:?}");
    let write = cli(&dev, &["put", "/myapp/feature", "maybe"], None);
    assert_eq!(write.code, 4, "{write:?}");

    // Followed to the end by a second process while this one steers.
    let mut follower = Background::start(
        &dev,
        &["rollout", "status", &id, "--wait"],
        dir.path().join("follow.out"),
    );
    let advanced = cli(&dev, &["rollout", "advance", &id], None).ok();
    assert!(advanced.stdout.contains("stage 2/3 (50%)"), "{advanced:?}");
    let paused = cli(&dev, &["rollout", "pause", &id, "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(paused["status"], "paused");
    let (code, out) = follower.finished().await;
    assert_eq!(code, 1, "a pause ends the wait for a person to act: {out}");
    assert!(out.contains("paused"), "{out}");
    cli(&dev, &["rollout", "resume", &id], None).ok();
    let mut follower = Background::start(
        &dev,
        &["rollout", "status", &id, "--wait"],
        dir.path().join("follow2.out"),
    );
    cli(&dev, &["rollout", "advance", &id], None).ok();
    let last = cli(&dev, &["rollout", "advance", &id], None).ok();
    assert!(last.stdout.contains("completed"), "{last:?}");
    let (code, out) = follower.finished().await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("completed as version 2"), "{out}");
    let value = cli(&dev, &["get", "/myapp/feature"], None).ok();
    assert_eq!(value.stdout, "on\n", "completion commits the candidate");

    // Another, rolled back while `start --wait` follows it: exit 1, the stable value stays.
    let mut waiting = Background::start(
        &dev,
        &[
            "rollout",
            "start",
            "/myapp/feature",
            "\"broken\"",
            "--stages",
            "50,100",
            "--ack-timeout",
            "1h",
            "--on-unhealthy",
            "pause",
            "--wait",
            "-o",
            "json",
        ],
        dir.path().join("start.out"),
    );
    let mut id = None;
    let seen = wait_until(Duration::from_secs(20), || {
        let run = cli(
            &dev,
            &["rollout", "status", "--status", "in_progress", "-o", "json"],
            None,
        );
        id = run.json()["rollouts"][0]["rollout_id"]
            .as_str()
            .map(str::to_owned);
        let found = id.is_some();
        async move { found }
    })
    .await;
    assert!(seen, "the second rollout never started");
    let id = id.unwrap();
    let shown = cli(&dev, &["rollout", "status", &id, "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(shown["health"]["on_unhealthy"], "pause");
    assert_eq!(shown["health"]["ack_timeout_ms"], 3_600_000);
    let rolled = cli(&dev, &["rollout", "rollback", &id], None).ok();
    assert!(rolled.stdout.contains("rolled_back"), "{rolled:?}");
    let (code, out) = waiting.finished().await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "rolled_back",
        "{out}"
    );
    let value = cli(&dev, &["get", "/myapp/feature"], None).ok();
    assert_eq!(value.stdout, "on\n");

    let missing = cli(&dev, &["rollout", "advance", "roll_nothing"], None);
    assert_eq!(missing.code, 3, "{missing:?}");
    let usage = cli(
        &dev,
        &[
            "rollout",
            "start",
            "/myapp/feature",
            "x",
            "--on-unhealthy",
            "explode",
        ],
        None,
    );
    assert_eq!(usage.code, 2, "{usage:?}");
}

#[tokio::test]
async fn the_key_comes_from_token_token_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;
    let key_file = dir.path().join("data").join("admin.key");
    let key = std::fs::read_to_string(&key_file).unwrap();

    // dev lets a request without a key in from loopback, but a wrong key is still refused.
    let wrong = cli(&dev, &["get", "/", "--token", "spk_wrong_key"], None);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(wrong.stderr.contains("401"), "{wrong:?}");
    cli(
        &dev,
        &["put", "/myapp/owner", "admin", "--token", key.trim()],
        None,
    )
    .ok();
    let by_file = cli(
        &dev,
        &[
            "get",
            "/myapp/owner",
            "-o",
            "json",
            "--token-file",
            key_file.to_str().unwrap(),
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(
        by_file["updated_by"], "admin",
        "the write was the admin's: {by_file}"
    );

    let by_env = Command::new(setpoint_bin())
        .args(["get", "/myapp/owner", "--addr", &dev.base()])
        .env("SETPOINT_API_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{by_env:?}");
    let wrong_env = Command::new(setpoint_bin())
        .args(["get", "/myapp/owner", "--addr", &dev.base()])
        .env("SETPOINT_TOKEN", "spk_wrong_key")
        .env_remove("SETPOINT_API_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(
        wrong_env.status.code(),
        Some(1),
        "SETPOINT_TOKEN is sent: {wrong_env:?}"
    );
    let missing_file = cli(
        &dev,
        &["get", "/", "--token-file", "/nonexistent/key"],
        None,
    );
    assert_eq!(missing_file.code, 2, "{missing_file:?}");
}

/// Regression: reqwest's redirect policy drops `Authorization` when a standby's 307 points at
/// the leader on another port, so a write through a standby was a 401.
#[tokio::test]
async fn a_write_through_a_standby_writer_reaches_the_leader_with_its_key() {
    use setpoint_tests::etcd::EtcdServer;
    use setpoint_tests::writer::test_admin_key;

    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, test_admin_key()).unwrap();
    let store = format!("etcd://{}", etcd.endpoint());
    let mut writers = Vec::new();
    for id in ["writer-a", "writer-b"] {
        let generated = dir.path().join(format!("{id}-generated.key"));
        writers.push(
            SetpointProcess::start(
                &[
                    "writer",
                    "--id",
                    id,
                    "--store",
                    &store,
                    "--admin-key-file",
                    key_file.to_str().unwrap(),
                    "--bootstrap-key-file",
                    generated.to_str().unwrap(),
                ],
                dir.path(),
            )
            .await,
        );
    }
    let http = reqwest::Client::new();
    let bases: Vec<String> = writers.iter().map(SetpointProcess::base).collect();
    let found = std::cell::RefCell::new(None);
    let decided = wait_until(Duration::from_secs(20), || async {
        let standby = standby_of(&http, &bases).await;
        let ok = standby.is_some();
        *found.borrow_mut() = standby;
        ok
    })
    .await;
    assert!(decided, "no leader and standby");
    let standby: String = found.into_inner().unwrap();

    let run = |args: &[&str]| {
        Command::new(setpoint_bin())
            .args(args)
            .args([
                "--addr",
                &standby,
                "--token-file",
                key_file.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let put = run(&["put", "/myapp/region", "eu", "-o", "json"]);
    assert!(put.status.success(), "{put:?}");
    let written: Value = serde_json::from_slice(&put.stdout).unwrap();
    assert_eq!(written["version"], 1);
    let read_back = wait_until(Duration::from_secs(10), || async {
        run(&["get", "/myapp/region"]).stdout == b"eu\n"
    })
    .await;
    assert!(read_back, "the standby serves the leader's write");
}

/// The standby's URL once one writer leads and the other stands by.
async fn standby_of(http: &reqwest::Client, bases: &[String]) -> Option<String> {
    let mut roles = Vec::new();
    for base in bases {
        let ready: Value = match http.get(format!("{base}/readyz")).send().await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        roles.push((
            base.clone(),
            ready["role"].as_str().unwrap_or("").to_owned(),
        ));
    }
    if !roles.iter().any(|(_, role)| role == "leader") {
        return None;
    }
    roles
        .into_iter()
        .find(|(_, role)| role == "standby")
        .map(|(base, _)| base)
}

/// `--wait` redraws one progress line on a terminal (a pty from util-linux `script`) and
/// prints plain lines, without escape codes, into a pipe.
#[tokio::test]
async fn rollout_progress_is_redrawn_on_a_terminal_and_plain_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;
    cli(&dev, &["put", "/myapp/mode", "a"], None).ok();
    let started = cli(
        &dev,
        &[
            "rollout",
            "start",
            "/myapp/mode",
            "b",
            "--stages",
            "50,100",
            "-o",
            "json",
        ],
        None,
    )
    .ok()
    .json();
    let id = started["rollout_id"].as_str().unwrap().to_owned();

    let typescript = dir.path().join("terminal.out");
    let command = format!(
        "{} rollout status {id} --wait --addr {}",
        setpoint_bin().display(),
        dev.base()
    );
    let mut terminal = std::process::Command::new("script")
        .args(["-qfec", &command])
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script");
    let plain_err = dir.path().join("plain.err");
    let mut plain = Command::new(setpoint_bin())
        .args(["rollout", "status", &id, "--wait", "--addr", &dev.base()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&plain_err).unwrap())
        .spawn()
        .unwrap();
    // Both show stage 1 before it moves on.
    let shown = wait_until(Duration::from_secs(20), || async {
        std::fs::read_to_string(&typescript)
            .unwrap_or_default()
            .contains("stage 1/2")
            && std::fs::read_to_string(&plain_err)
                .unwrap_or_default()
                .contains("stage 1/2")
    })
    .await;
    assert!(shown, "no progress shown");
    cli(&dev, &["rollout", "advance", &id], None).ok();
    cli(&dev, &["rollout", "advance", &id], None).ok();
    let ended = wait_until(Duration::from_secs(20), || {
        let done =
            matches!(terminal.try_wait(), Ok(Some(_))) && matches!(plain.try_wait(), Ok(Some(_)));
        async move { done }
    })
    .await;
    assert!(ended, "the waits did not end on completion");

    let on_terminal = std::fs::read_to_string(&typescript).unwrap();
    assert!(
        on_terminal.contains("\r\u{1b}[2K") && on_terminal.contains("[####################]"),
        "{on_terminal:?}"
    );
    let in_pipe = std::fs::read_to_string(&plain_err).unwrap();
    assert!(
        !in_pipe.contains('\u{1b}') && !in_pipe.contains('\r'),
        "{in_pipe:?}"
    );
    let lines: Vec<&str> = in_pipe.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.contains("[##########----------]  stage 1/2 (50%)")),
        "{in_pipe:?}"
    );
    assert!(
        lines.last().is_some_and(|l| l.contains("completed")),
        "one line per change: {in_pipe:?}"
    );
}

#[tokio::test]
async fn a_watch_whose_key_is_revoked_ends_with_the_reason_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev(dir.path()).await;
    let admin = std::fs::read_to_string(dir.path().join("data").join("admin.key")).unwrap();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/accounts", dev.base()))
        .bearer_auth(admin.trim())
        .json(&serde_json::json!({"id": "watcher", "grants": [{"prefix": "/myapp", "actions": ["read"]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let written = cli(&dev, &["put", "/myapp/a", "1", "-o", "json"], None)
        .ok()
        .json();
    let revision = written["revision"].as_i64().unwrap().to_string();

    let out = dir.path().join("watch.out");
    let err = dir.path().join("watch.err");
    let mut watch = Command::new(setpoint_bin())
        .args([
            "watch",
            "/myapp",
            "--from-revision",
            &revision,
            "--token",
            &key,
        ])
        .args(["--addr", &dev.base()])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    cli(&dev, &["put", "/myapp/a", "2"], None).ok();
    let live = wait_until(Duration::from_secs(20), || async {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("/myapp/a = 2")
    })
    .await;
    assert!(live, "the watch never printed the write");

    cli(&dev, &["put", "/myapp/a", "3"], None).ok();
    let revoked = http
        .delete(format!("{}/api/accounts/watcher", dev.base()))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{revoked:?}");
    // Deliveries re-check the key, so keep writing until one is refused.
    let mut code = None;
    let ended = wait_until(Duration::from_secs(20), || {
        code = watch.try_wait().unwrap().map(|s| s.code());
        let done = code.is_some();
        let base = dev.base();
        async move {
            if !done {
                let _ = Command::new(setpoint_bin())
                    .args(["put", "/myapp/a", "4", "--addr", &base])
                    .output();
            }
            done
        }
    })
    .await;
    if !ended {
        let _ = watch.kill();
        let _ = watch.wait();
    }
    assert!(ended, "the watch kept going after its key was removed");
    assert_eq!(code, Some(Some(1)));
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(stderr.contains("the watch was ended"), "{stderr}");
}
