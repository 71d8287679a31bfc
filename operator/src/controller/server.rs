//! What the API server the operator talks to knows, found once at start ([`ServerCapabilities::
//! discover`]) and kept for the life of the client: objects are built for that server, not for the
//! newest API.
//!
//! Server-side apply refuses fields the server's schema does not declare (`.spec.X: field not
//! declared in schema`), so a field newer than the server must not be sent at all:
//! - StatefulSet `persistentVolumeClaimRetentionPolicy` exists from Kubernetes 1.23; older servers
//!   keep volumes anyway (the policy's `Retain` is what they always did). The other post-1.20
//!   StatefulSet fields (`minReadySeconds`, `ordinals`) are never set by the operator.
//! - PodDisruptionBudget: `policy/v1` from 1.21, found by discovery (is the resource served?),
//!   not by the version number; before it `policy/v1beta1` has the same shape for what is set
//!   (`maxUnavailable`, `selector`).
//! - Endpoints of projected services: `discovery.k8s.io/v1` EndpointSlices from 1.21, found by
//!   discovery; before it the core `Endpoints` (which later servers mirror into slices anyway).
//!
//! Fields users put in the spec (affinity, topology spread constraints, resources) are passed
//! as given: a field their server does not know fails the apply, which the status then reports
//! (`Degraded`, reason `ApplyFailed`).

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};
use snafu::{ResultExt, Snafu};

/// A Kubernetes minor release, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    /// Major version (1).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl KubeVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The oldest Kubernetes the operator supports (docs/operator.md, the chart's `kubeVersion`,
    /// the API-server test tier).
    pub const OLDEST_SUPPORTED: Self = Self::new(1, 20);
}

impl std::fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Which PodDisruptionBudget API the API server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdbVersion {
    /// `policy/v1` (Kubernetes 1.21 and later).
    V1,
    /// Only `policy/v1beta1` (before 1.21).
    V1beta1,
}

impl PdbVersion {
    /// The API the budget is applied under.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Self::V1 => ApiResource::erase::<PodDisruptionBudget>(&()),
            Self::V1beta1 => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
                "poddisruptionbudgets",
            ),
        }
    }
}

/// How the endpoints of projected services are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointsApi {
    /// `discovery.k8s.io/v1` EndpointSlices (Kubernetes 1.21 and later).
    EndpointSliceV1,
    /// Core `v1` Endpoints (before 1.21).
    Endpoints,
}

/// What the API server knows, as far as the objects the operator builds are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCapabilities {
    /// The server's version.
    pub version: KubeVersion,
    /// The PodDisruptionBudget API it serves.
    pub pdb: PdbVersion,
    /// How projected services' endpoints are written.
    pub endpoints: EndpointsApi,
}

/// Why discovery failed.
#[derive(Debug, Snafu)]
pub enum Error {
    /// `GET /version` failed.
    #[snafu(display("cannot read the API server's version"))]
    Version {
        /// Cause.
        source: kube::Error,
    },
    /// The version is not `<digits>.<digits>[+…]`.
    #[snafu(display("cannot parse the API server's version {major:?}.{minor:?}"))]
    ParseVersion {
        /// `major` as reported.
        major: String,
        /// `minor` as reported.
        minor: String,
    },
    /// Listing an API group's resources failed (other than with 404).
    #[snafu(display("cannot discover the {group_version} API"))]
    Discovery {
        /// The group and version asked about.
        group_version: &'static str,
        /// Cause.
        source: kube::Error,
    },
}

impl ServerCapabilities {
    /// A server that knows every field and API the operator uses (Kubernetes 1.33, the API level
    /// it is compiled against).
    pub const NEWEST: Self =
        Self { version: KubeVersion::new(1, 33), pdb: PdbVersion::V1, endpoints: EndpointsApi::EndpointSliceV1 };

    /// Asks the server: `GET /version`, then whether `policy/v1` serves PodDisruptionBudgets and
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub async fn discover(client: &Client) -> Result<Self, Error> {
        let info = client.apiserver_version().await.context(VersionSnafu)?;
        let version = parse_version(&info.major, &info.minor)
            .ok_or_else(|| ParseVersionSnafu { major: info.major.clone(), minor: info.minor.clone() }.build())?;
        let pdb = if serves(client, "policy/v1", "poddisruptionbudgets").await? {
            PdbVersion::V1
        } else {
            PdbVersion::V1beta1
        };
        let endpoints = if serves(client, "discovery.k8s.io/v1", "endpointslices").await? {
            EndpointsApi::EndpointSliceV1
        } else {
            EndpointsApi::Endpoints
        };
        Ok(Self { version, pdb, endpoints })
    }

    /// Whether StatefulSets have `persistentVolumeClaimRetentionPolicy` (Kubernetes 1.23).
    pub fn statefulset_pvc_retention_policy(&self) -> bool {
        self.version >= KubeVersion::new(1, 23)
    }
}

/// Whether the server serves `resource` in `group_version` (a group it does not know is 404).
async fn serves(client: &Client, group_version: &'static str, resource: &str) -> Result<bool, Error> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource)),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(source) => Err(source).context(DiscoverySnafu { group_version }),
    }
}

impl std::fmt::Display for ServerCapabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pdb = match self.pdb {
            PdbVersion::V1 => "policy/v1",
            PdbVersion::V1beta1 => "policy/v1beta1",
        };
        let endpoints = match self.endpoints {
            EndpointsApi::EndpointSliceV1 => "EndpointSlice discovery.k8s.io/v1",
            EndpointsApi::Endpoints => "Endpoints v1",
        };
        write!(f, "Kubernetes {}, PodDisruptionBudget {pdb}, {endpoints}", self.version)?;
        if !self.statefulset_pvc_retention_policy() {
            write!(f, ", StatefulSet without persistentVolumeClaimRetentionPolicy")?;
        }
        Ok(())
    }
}

/// `major`/`minor` as `/version` reports them; managed offerings append to the minor
/// (`"27+"`), so only its leading digits count.
fn parse_version(major: &str, minor: &str) -> Option<KubeVersion> {
    let digits = |s: &str| {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse::<u32>().ok()
    };
    Some(KubeVersion::new(digits(major)?, digits(minor)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_provider_suffixes() {
        assert_eq!(parse_version("1", "20"), Some(KubeVersion::new(1, 20)));
        assert_eq!(parse_version("1", "27+"), Some(KubeVersion::new(1, 27)));
        assert_eq!(parse_version("1", ""), None);
        assert_eq!(parse_version("", "20"), None);
    }

    #[test]
    fn the_retention_policy_is_known_from_1_23() {
        let at = |minor| ServerCapabilities {
            version: KubeVersion::new(1, minor),
            pdb: PdbVersion::V1,
            endpoints: EndpointsApi::EndpointSliceV1,
        };
        assert!(!at(20).statefulset_pvc_retention_policy());
        assert!(!at(22).statefulset_pvc_retention_policy());
        assert!(at(23).statefulset_pvc_retention_policy());
        assert!(ServerCapabilities::NEWEST.statefulset_pvc_retention_policy());
    }
}
