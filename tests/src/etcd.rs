//! A real etcd server for tests.
