//! The SDK conformance suite: every scenario of `tests/conformance/scenarios/` against every SDK
//! (Rust, Go, Python, Node.js), on `setpoint dev` and on etcd + writer + an mTLS edge. Each SDK's
//! driver is prepared by `sdk/<sdk>/conformance-driver --prepare` (built or installed with that
//! language's own toolchain); a driver that cannot be prepared fails its test.

#![allow(clippy::unwrap_used)]

use setpoint_tests::conformance::cluster::Mode;
use setpoint_tests::conformance::run_all;

macro_rules! sdk_tests {
    ($($name:ident => $sdk:literal),* $(,)?) => {
        $(mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_setpoint_dev() {
                let measured = run_all($sdk, Mode::Dev).await;
                assert!(
                    !measured.is_empty() || std::env::var("SETPOINT_CONFORMANCE_ONLY").is_ok(),
                    "the propagation scenario ran"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_etcd_with_an_mtls_edge() {
                let measured = run_all($sdk, Mode::Etcd).await;
                assert!(
                    !measured.is_empty() || std::env::var("SETPOINT_CONFORMANCE_ONLY").is_ok(),
                    "the propagation scenario ran"
                );
            }
        })*
    };
}

sdk_tests! {
    rust => "rust",
    go => "go",
    python => "python",
    node => "node",
}
