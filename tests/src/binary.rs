//! The real `setpoint` binary as a child process: started on a free loopback port, stopped by
//! its PID (SIGTERM for a graceful stop, SIGKILL on drop).
//!
//! The binary must be built before the tests run (`cargo build -p setpoint-cli`, which the test
//! script does); `SETPOINT_BIN` overrides where it is looked for.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// `target/<profile>/setpoint`, next to the test executable's `deps/` folder.
pub fn setpoint_bin() -> PathBuf {
    if let Ok(path) = std::env::var("SETPOINT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout");
    let bin = profile_dir.join("setpoint");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build -p setpoint-cli` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A dev CA with writer and edge certificates, made by `setpoint certs`.
pub struct Certs {
    dir: PathBuf,
}

impl Certs {
    pub fn make(dir: &std::path::Path) -> Certs {
        let dir = dir.join("certs");
        let status = Command::new(setpoint_bin())
            .args(["certs", "--out", &dir.to_string_lossy()])
            .status()
            .expect("run setpoint certs");
        assert!(status.success(), "setpoint certs failed");
        Certs { dir }
    }

    /// Signs a regional edge's certificate `name.pem`/`name.key` with this CA
    /// (`setpoint certs --regional`); then `args(name)` names it.
    pub fn regional(&self, name: &str) {
        let status = Command::new(setpoint_bin())
            .args([
                "certs",
                "--out",
                &self.dir.to_string_lossy(),
                "--regional",
                name,
            ])
            .status()
            .expect("run setpoint certs --regional");
        assert!(status.success(), "setpoint certs --regional {name} failed");
    }

    /// `--ca … --cert … --key …` for `role` (`writer`, `edge`, or a regional's name).
    pub fn args(&self, role: &str) -> Vec<String> {
        let file = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        vec![
            "--ca".into(),
            file("ca.pem"),
            "--cert".into(),
            file(&format!("{role}.pem")),
            "--key".into(),
            file(&format!("{role}.key")),
        ]
    }
}

pub struct SetpointProcess {
    child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
}

impl SetpointProcess {
    /// Runs `setpoint <args>` with `--listen` on a free port, waits until `/healthz` answers.
    pub async fn start(args: &[&str], log_dir: &std::path::Path) -> SetpointProcess {
        let addr = format!("127.0.0.1:{}", crate::free_port());
        SetpointProcess::start_on(args, &addr, log_dir).await
    }

    /// Like [`SetpointProcess::start`] on a given address (to restart a node where it was).
    pub async fn start_on(args: &[&str], addr: &str, log_dir: &std::path::Path) -> SetpointProcess {
        SetpointProcess::start_with_env(args, &[], addr, log_dir).await
    }

    /// Like [`SetpointProcess::start_on`] with extra environment variables.
    pub async fn start_with_env(
        args: &[&str],
        env: &[(&str, &str)],
        addr: &str,
        log_dir: &std::path::Path,
    ) -> SetpointProcess {
        let addr = addr.to_owned();
        let log = log_dir.join(format!("setpoint-{}.log", addr.replace([':', '.'], "_")));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open process log");
        let child = Command::new(setpoint_bin())
            .args(args)
            .args(["--listen", &addr])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .expect("spawn the setpoint binary");
        let process = SetpointProcess {
            child: Some(child),
            addr,
            log,
        };
        let url = format!("http://{}/healthz", process.addr);
        let ok = crate::wait_healthy(&reqwest::Client::new(), &url, Duration::from_secs(20)).await;
        assert!(
            ok,
            "setpoint {args:?} did not become healthy; log:\n{}",
            process.log_text()
        );
        process
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no goodbye, no final save.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a graceful exit (at most 10 s).
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process still running");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!(
            "setpoint did not exit within 10 s of SIGTERM; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for SetpointProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
