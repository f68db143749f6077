//! Test harness shared by the integration tests in `tests/tests/`: starts real services (etcd)
//! on free loopback ports, stops them by PID, and waits on predicates instead of sleeping.
//! A service that cannot start fails the test loudly; nothing here ever skips.

pub mod etcd;
