//! Setpoint's wire contracts. Holds the edge gRPC API (`.proto`) and the replication frame codec
//! once the edge tier lands; empty until then so the writer and the edge share one definition.
