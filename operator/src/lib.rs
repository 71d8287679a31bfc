//! nacos-operator: runs Nacos-compatible registry clusters on Kubernetes.
//!
//! Layout (read in this order):
//! - [`crd`]: the `NacosCluster` resource (spec, status, conditions) and the CRD YAML.
//! - [`controller`]: the reconcile pipeline (dereference → validate → build → apply →
//!   status) with membership changes on scale, and the controller loop.
//! - [`projection`]: registered services as headless Services with endpoints (cluster DNS).
//! - [`metrics`]: reconcile metrics and the `/metrics` + `/healthz` server.
//! - [`pki`]: the operator's certificate authorities (webhook, registry clusters' TLS).
//! - [`quantity`]: Kubernetes quantity syntax, for validation.
//! - [`webhook`]: the sidecar-injection admission webhook and its self-managed certificate.
//!
//! The binary (`src/main.rs`) is a thin clap front end over this library.

pub mod controller;
pub mod crd;
pub mod metrics;
pub mod pki;
pub mod projection;
pub mod quantity;
pub mod webhook;

#[cfg(test)]
mod fixtures;
