//! The API-server tier: the operator, the chart and the examples against a real Kubernetes API
//! server and controller manager (1.20.2, the oldest supported version) on loopback. Nothing here
//! asserts on a mock: every object, status and event is what the real API server stored.
//!
//! `harness` starts the control plane (or prints `SKIP apiserver-tier: …` without its binaries;
//! `APISERVER_TIER_REQUIRED=1` makes that a failure); `operator` runs the real controller loop
//! in-process. Tests that run the operator (which watches every namespace) start a control plane
//! of their own; the others share the process's one, each in its own namespace.

mod chart;
mod cluster;
mod cluster_dns;
mod harness;
mod injection;
mod kubelet;
mod members;
mod operator;
mod projection;
mod registry;
mod tls;
