//! nacos-operator: runs Nacos-compatible registry clusters on Kubernetes.
//!
//! Layout (read in this order):
//! - [`crd`]: the `NacosCluster` resource (spec, status, conditions) and the CRD YAML.
//! - [`controller`]: the reconcile pipeline. Built so far: its pure steps,
//!   [`controller::validate`] (spec → `ValidatedCluster`) and [`controller::build`]
//!   (`ValidatedCluster` → ConfigMap, Services, StatefulSet, PodDisruptionBudget).
//! - [`quantity`]: Kubernetes quantity syntax, for validation.
//!
//! The binary (`src/main.rs`) is a thin clap front end over this library.

pub mod controller;
pub mod crd;
pub mod quantity;

#[cfg(test)]
mod fixtures;
