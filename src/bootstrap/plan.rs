//! The provisioning plan: the ordered ARM requests that bring a
//! [`Bootstrap`] config into being, each with its exact path, api-version
//! and body.
//!
//! Owns the request bodies and their order (amlfs-azure.md §8): storage
//! account → containers → role assignments for the HPC Cache Resource
//! Provider (before AMLFS, which cannot detect missing roles) → AMLFS subnet →
//! peering both ways → subnet preflight → AMLFS with blob integration → NSG
//! rules. Invariants: every body is built from the config alone (no secret
//! exists to put in one); role-assignment names are UUIDv5 of scope, role and
//! principal, so a rerun PUTs the same names; bodies validate against the
//! official REST specs (tested in `tests/bootstrap.rs`).

use serde::Serialize;
use serde_json::{json, Value};

use super::config::{sku_limits, Bootstrap};

/// api-versions (amlfs-azure.md §8).
pub const STORAGE_API: &str = "2025-01-01";
/// Microsoft.Network.
pub const NETWORK_API: &str = "2025-05-01";
/// Microsoft.Authorization role assignments.
pub const AUTH_API: &str = "2022-04-01";
/// The HPC Cache Resource Provider's application id.
pub const HPC_CACHE_RP_APP_ID: &str = "4392ab71-2ce2-4b0d-8770-b352745c73f5";
/// Storage Account Contributor.
pub const ROLE_STORAGE_ACCOUNT_CONTRIBUTOR: &str = "17d1049b-9a84-46fb-8f53-869881c3d3ab";
/// Storage Blob Data Contributor.
pub const ROLE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
/// Lustre's ports (TCP).
pub const LUSTRE_PORTS: [&str; 2] = ["988", "1019-1023"];

/// What a step is, for the spec check and the apply logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Microsoft.Storage/storageAccounts.
    StorageAccount,
    /// .../blobServices/default/containers.
    Container,
    /// Microsoft.Authorization/roleAssignments.
    RoleAssignment,
    /// Microsoft.Network/virtualNetworks/subnets.
    Subnet,
    /// Microsoft.Network/virtualNetworks/virtualNetworkPeerings.
    Peering,
    /// POST getRequiredAmlFSSubnetsSize (preflight, no resource).
    SubnetSize,
    /// POST checkAmlFSSubnets (preflight, no resource).
    SubnetCheck,
    /// Microsoft.StorageCache/amlFilesystems.
    Amlfs,
    /// Microsoft.Network/networkSecurityGroups/securityRules.
    SecurityRule,
}

/// One ARM request of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What it is.
    pub kind: Kind,
    /// One line for humans.
    pub title: String,
    /// `PUT` or `POST`.
    pub method: &'static str,
    /// Resource path (no host), without the query.
    pub path: String,
    /// api-version.
    pub api_version: String,
    /// The JSON body.
    pub body: Value,
    /// Fields that cannot change once the resource exists (apply fails
    /// loudly if the live value differs).
    pub create_only: Vec<&'static str>,
    /// For the subnet-size preflight: addresses in the configured prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_size: Option<u64>,
}

impl Step {
    /// `PATH?api-version=V`.
    pub fn url_path(&self) -> String {
        format!("{}?api-version={}", self.path, self.api_version)
    }
}

fn rg_path(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

/// Deterministic role-assignment name.
pub fn assignment_name(scope: &str, role: &str, principal: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("hopstage:{scope}|{role}|{principal}")
            .to_lowercase()
            .as_bytes(),
    )
    .to_string()
}

/// Builds the plan. Call [`Bootstrap::check`] first.
pub fn plan(b: &Bootstrap) -> Vec<Step> {
    let sub = &b.subscription;
    let base = rg_path(sub, &b.resource_group);
    let account_id = format!(
        "{base}/providers/Microsoft.Storage/storageAccounts/{}",
        b.storage.account
    );
    let container_id = |c: &str| format!("{account_id}/blobServices/default/containers/{c}");
    let vnet = b.network.amlfs_vnet.trim_end_matches('/').to_string();
    let subnet_id = format!("{vnet}/subnets/{}", b.network.subnet_name);
    let mut steps = Vec::new();

    steps.push(Step {
        kind: Kind::StorageAccount,
        title: format!(
            "storage account {} (StorageV2, HNS {})",
            b.storage.account, b.storage.hns
        ),
        method: "PUT",
        path: account_id.clone(),
        api_version: STORAGE_API.into(),
        body: json!({
            "location": b.location,
            "kind": "StorageV2",
            "sku": {"name": b.storage.sku},
            "properties": {
                "isHnsEnabled": b.storage.hns,
                // AMLFS blob integration needs shared-key access enabled; hopstage
                // itself and the nodes use Entra ID.
                "allowSharedKeyAccess": true,
                "allowBlobPublicAccess": false,
                "minimumTlsVersion": "TLS1_2",
                "supportsHttpsTrafficOnly": true
            }
        }),
        create_only: vec!["location", "kind", "properties.isHnsEnabled"],
        subnet_size: None,
    });
    for c in [&b.storage.data_container, &b.storage.log_container] {
        steps.push(Step {
            kind: Kind::Container,
            title: format!("container {c}"),
            method: "PUT",
            path: container_id(c),
            api_version: STORAGE_API.into(),
            body: json!({"properties": {"publicAccess": "None"}}),
            create_only: vec![],
            subnet_size: None,
        });
    }
    for (role, name) in [
        (
            ROLE_STORAGE_ACCOUNT_CONTRIBUTOR,
            "Storage Account Contributor",
        ),
        (ROLE_BLOB_DATA_CONTRIBUTOR, "Storage Blob Data Contributor"),
    ] {
        let id = assignment_name(&account_id, role, &b.roles.hpc_cache_rp_object_id);
        steps.push(Step {
            kind: Kind::RoleAssignment,
            title: format!("role {name} for the HPC Cache Resource Provider on {}", b.storage.account),
            method: "PUT",
            path: format!("{account_id}/providers/Microsoft.Authorization/roleAssignments/{id}"),
            api_version: AUTH_API.into(),
            body: json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
                "principalId": b.roles.hpc_cache_rp_object_id,
                "principalType": "ServicePrincipal"
            }}),
            create_only: vec!["properties.roleDefinitionId", "properties.principalId"],
            subnet_size: None,
        });
    }
    let sc = &b.amlfs.api_version;
    steps.push(Step {
        kind: Kind::SubnetSize,
        title: format!(
            "preflight: addresses AMLFS needs for {} TiB of {}",
            b.amlfs.capacity_tib, b.amlfs.sku
        ),
        method: "POST",
        path: format!(
            "/subscriptions/{sub}/providers/Microsoft.StorageCache/getRequiredAmlFSSubnetsSize"
        ),
        api_version: sc.clone(),
        body: json!({"storageCapacityTiB": b.amlfs.capacity_tib, "sku": {"name": b.amlfs.sku}}),
        create_only: vec![],
        subnet_size: super::config::Cidr::parse(&b.network.subnet_prefix)
            .ok()
            .map(|c| c.size()),
    });
    steps.push(Step {
        kind: Kind::Subnet,
        title: format!(
            "subnet {} {}",
            b.network.subnet_name, b.network.subnet_prefix
        ),
        method: "PUT",
        path: subnet_id.clone(),
        api_version: NETWORK_API.into(),
        // Apply merges the live subnet's other properties into this body.
        body: json!({"properties": {"addressPrefix": b.network.subnet_prefix}}),
        create_only: vec![],
        subnet_size: None,
    });
    if !b.same_vnet() {
        let azhop = b.network.azhop_vnet.trim_end_matches('/').to_string();
        let name_of = |id: &str| id.rsplit('/').next().unwrap_or_default().to_string();
        for (from, to) in [(&vnet, &azhop), (&azhop, &vnet)] {
            steps.push(Step {
                kind: Kind::Peering,
                title: format!("peering {} -> {}", name_of(from), name_of(to)),
                method: "PUT",
                path: format!("{from}/virtualNetworkPeerings/hopstage-to-{}", name_of(to)),
                api_version: NETWORK_API.into(),
                body: json!({"properties": {
                    "allowVirtualNetworkAccess": true,
                    "allowForwardedTraffic": false,
                    "allowGatewayTransit": false,
                    "useRemoteGateways": false,
                    "remoteVirtualNetwork": {"id": to}
                }}),
                create_only: vec![],
                subnet_size: None,
            });
        }
    }
    steps.push(Step {
        kind: Kind::SubnetCheck,
        title: "preflight: AMLFS subnet size and placement".into(),
        method: "POST",
        path: format!("/subscriptions/{sub}/providers/Microsoft.StorageCache/checkAmlFSSubnets"),
        api_version: sc.clone(),
        body: json!({
            "filesystemSubnet": subnet_id,
            "storageCapacityTiB": b.amlfs.capacity_tib,
            "sku": {"name": b.amlfs.sku},
            "location": b.location
        }),
        create_only: vec![],
        subnet_size: None,
    });
    let rate = sku_limits(&b.amlfs.sku).map_or(0, |l| l.0) * b.amlfs.capacity_tib;
    steps.push(Step {
        kind: Kind::Amlfs,
        title: format!(
            "AMLFS {} ({}, {} TiB, {rate} MB/s, zone {}) importing {}:{}",
            b.amlfs.name,
            b.amlfs.sku,
            b.amlfs.capacity_tib,
            b.amlfs.zone,
            b.storage.data_container,
            b.amlfs.import_prefix
        ),
        method: "PUT",
        path: format!(
            "{base}/providers/Microsoft.StorageCache/amlFilesystems/{}",
            b.amlfs.name
        ),
        api_version: sc.clone(),
        body: json!({
            "location": b.location,
            "sku": {"name": b.amlfs.sku},
            "zones": [b.amlfs.zone],
            "properties": {
                "storageCapacityTiB": b.amlfs.capacity_tib,
                "filesystemSubnet": subnet_id,
                "maintenanceWindow": {
                    "dayOfWeek": b.amlfs.maintenance_day,
                    "timeOfDayUTC": b.amlfs.maintenance_time_utc
                },
                "hsm": {"settings": {
                    "container": container_id(&b.storage.data_container),
                    "loggingContainer": container_id(&b.storage.log_container),
                    "importPrefix": b.amlfs.import_prefix
                }}
            }
        }),
        create_only: vec![
            "location",
            "sku.name",
            "zones",
            "properties.storageCapacityTiB",
            "properties.filesystemSubnet",
            "properties.hsm.settings.container",
            "properties.hsm.settings.loggingContainer",
        ],
        subnet_size: None,
    });
    let nsg = b.network.azhop_nsg.trim_end_matches('/');
    if b.network.nsg == "blog" {
        for (rule, dir) in [
            ("DenyVnetInbound", "Inbound"),
            ("DenyVnetOutbound", "Outbound"),
        ] {
            steps.push(Step {
                kind: Kind::SecurityRule,
                title: format!("NSG {rule} at 3100 flipped to Allow (WARNING: opens all vnet and peered traffic)"),
                method: "PUT",
                path: format!("{nsg}/securityRules/{rule}"),
                api_version: NETWORK_API.into(),
                body: json!({"properties": {
                    "priority": 3100,
                    "direction": dir,
                    "access": "Allow",
                    "protocol": "*",
                    "sourcePortRange": "*",
                    "destinationPortRanges": ["0-65535"],
                    "sourceAddressPrefix": "VirtualNetwork",
                    "destinationAddressPrefix": "VirtualNetwork"
                }}),
                create_only: vec![],
                subnet_size: None,
            });
        }
    } else {
        let (compute, amlfs) = (&b.network.compute_subnet_prefix, &b.network.subnet_prefix);
        for (rule, dir, src, dst) in [
            ("HopstageAmlfsLustreOut", "Outbound", compute, amlfs),
            ("HopstageAmlfsLustreIn", "Inbound", amlfs, compute),
        ] {
            steps.push(Step {
                kind: Kind::SecurityRule,
                title: format!(
                    "NSG {rule}: allow TCP 988,1019-1023 {src} -> {dst} at {}",
                    b.network.nsg_priority
                ),
                method: "PUT",
                path: format!("{nsg}/securityRules/{rule}"),
                api_version: NETWORK_API.into(),
                body: json!({"properties": {
                    "description": "hopstage: Lustre between compute nodes and AMLFS",
                    "priority": b.network.nsg_priority,
                    "direction": dir,
                    "access": "Allow",
                    "protocol": "Tcp",
                    "sourcePortRange": "*",
                    "destinationPortRanges": LUSTRE_PORTS,
                    "sourceAddressPrefix": src,
                    "destinationAddressPrefix": dst
                }}),
                create_only: vec![],
                subnet_size: None,
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_names_and_no_secrets() {
        let b = Bootstrap::parse(include_str!("../../docs/bootstrap.example.toml")).unwrap();
        let p = plan(&b);
        let kinds: Vec<Kind> = p.iter().map(|s| s.kind).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            vec![
                StorageAccount,
                Container,
                Container,
                RoleAssignment,
                RoleAssignment,
                SubnetSize,
                Subnet,
                Peering,
                Peering,
                SubnetCheck,
                Amlfs,
                SecurityRule,
                SecurityRule
            ]
        );
        // Roles come before AMLFS (it cannot detect missing roles) and names are stable.
        assert_eq!(plan(&b)[3].path, p[3].path);
        assert_ne!(p[3].path, p[4].path);
        let text = serde_json::to_string(&p).unwrap();
        for secret in ["key", "sas", "sig=", "password", "secret"] {
            assert!(
                !text.to_lowercase().contains(&format!("\"{secret}\"")),
                "{secret} in a body"
            );
        }
        let mut same = b.clone();
        same.network.amlfs_vnet = same.network.azhop_vnet.clone();
        assert!(!plan(&same).iter().any(|s| s.kind == Peering));
    }
}
