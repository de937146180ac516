//! `bootstrap.toml`: the declarative description of what an az-hop cluster
//! needs around hopstage (storage account, containers, roles, subnet,
//! peering, AMLFS, NSG rules), and every check that can be made before any
//! call to Azure.
//!
//! Owns the input rules. Invariants: a config that passes [`Bootstrap::check`]
//! names valid resources (Azure's name rules), a SKU/capacity pair on the
//! SKU's step, a subnet inside the AMLFS vnet's address space and not
//! overlapping the compute subnet, and a well-formed maintenance window; every
//! error is one line naming the key and the fix. No secret is ever read here.

use std::net::Ipv4Addr;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Subscription id (GUID).
    pub subscription: String,
    /// Azure region, e.g. `westeurope`.
    pub location: String,
    /// Resource group for the storage account and AMLFS (must exist).
    pub resource_group: String,
    /// The storage account.
    pub storage: Storage,
    /// Networking.
    pub network: Network,
    /// The file system.
    pub amlfs: Amlfs,
    /// Role assignments.
    pub roles: Roles,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Account name (3-24 lowercase letters and digits).
    pub account: String,
    /// Data Lake Gen2 (hierarchical namespace); create-only.
    #[serde(default = "yes")]
    pub hns: bool,
    /// Redundancy SKU (`Standard_LRS`, `Standard_ZRS`, ...).
    #[serde(default = "lrs")]
    pub sku: String,
    /// The data container AMLFS imports from (`home`).
    #[serde(default = "home")]
    pub data_container: String,
    /// The container AMLFS logs to (`log`).
    #[serde(default = "log")]
    pub log_container: String,
}

/// `[network]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Resource id of the vnet the AMLFS subnet goes in.
    pub amlfs_vnet: String,
    /// Its address space (checked against the live vnet by apply).
    pub amlfs_vnet_address_space: Vec<String>,
    /// Subnet name for AMLFS.
    #[serde(default = "amlfs_subnet")]
    pub subnet_name: String,
    /// Subnet prefix for AMLFS, e.g. `10.1.0.0/24`.
    pub subnet_prefix: String,
    /// Resource id of az-hop's vnet (`hpcvnet`); peered both ways when it
    /// is not the AMLFS vnet.
    pub azhop_vnet: String,
    /// Resource id of az-hop's NSG (`nsg-common`).
    pub azhop_nsg: String,
    /// The compute subnet's prefix (the Lustre clients).
    pub compute_subnet_prefix: String,
    /// `narrow` (default: allow Lustre ports between the two subnets) or
    /// `blog` (flip az-hop's 3100 Deny rules to Allow: opens all vnet traffic).
    #[serde(default = "narrow")]
    pub nsg: String,
    /// Priority of the narrow rules (inbound and outbound), below 3100.
    #[serde(default = "priority")]
    pub nsg_priority: u32,
}

/// `[amlfs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amlfs {
    /// File system name.
    pub name: String,
    /// `AMLFS-Durable-Premium-{40,125,250,500}`.
    pub sku: String,
    /// Capacity in TiB, a multiple of the SKU's step.
    pub capacity_tib: u32,
    /// Availability zone (same as the compute nodes').
    pub zone: String,
    /// Weekly maintenance day.
    #[serde(default = "saturday")]
    pub maintenance_day: String,
    /// Maintenance time, `HH:MM` UTC.
    #[serde(default = "late")]
    pub maintenance_time_utc: String,
    /// Import prefix used once at creation.
    #[serde(default = "slash")]
    pub import_prefix: String,
    /// Microsoft.StorageCache api-version: `2024-07-01` or `2026-01-01`.
    #[serde(default = "sc_version")]
    pub api_version: String,
}

/// `[roles]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Object id, in this tenant, of the "HPC Cache Resource Provider"
    /// service principal (app id 4392ab71-2ce2-4b0d-8770-b352745c73f5):
    /// `az ad sp show --id 4392ab71-2ce2-4b0d-8770-b352745c73f5 --query id -o tsv`.
    pub hpc_cache_rp_object_id: String,
}

fn yes() -> bool {
    true
}
fn lrs() -> String {
    "Standard_LRS".into()
}
fn home() -> String {
    "home".into()
}
fn log() -> String {
    "log".into()
}
fn amlfs_subnet() -> String {
    "amlfs".into()
}
fn narrow() -> String {
    "narrow".into()
}
fn priority() -> u32 {
    2800
}
fn saturday() -> String {
    "Saturday".into()
}
fn late() -> String {
    "23:00".into()
}
fn slash() -> String {
    "/".into()
}
fn sc_version() -> String {
    "2024-07-01".into()
}

/// SKU → (MB/s per TiB, minimum TiB, maximum TiB, step TiB), from the AMLFS
/// documentation's table (amlfs-azure.md §1.2).
pub fn sku_limits(sku: &str) -> Option<(u32, u32, u32, u32)> {
    match sku {
        "AMLFS-Durable-Premium-40" => Some((40, 48, 768, 48)),
        "AMLFS-Durable-Premium-125" => Some((125, 16, 128, 16)),
        "AMLFS-Durable-Premium-250" => Some((250, 8, 128, 8)),
        "AMLFS-Durable-Premium-500" => Some((500, 4, 128, 4)),
        _ => None,
    }
}

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: u32,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; the host bits must be zero.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("'{s}' is not an IPv4 prefix like 10.1.0.0/24");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        let addr = u32::from(ip);
        if addr & !Self::mask(len) != 0 {
            return Err(format!(
                "'{s}' has host bits set: use {}/{len}",
                Ipv4Addr::from(addr & Self::mask(len))
            ));
        }
        Ok(Cidr { addr, len })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        other.len >= self.len && other.addr & Self::mask(self.len) == self.addr
    }

    /// True when the two prefixes share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.len)
    }
}

/// A parsed ARM resource id: `/subscriptions/S/resourceGroups/G/providers/NS/TYPE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    /// Subscription.
    pub subscription: String,
    /// Resource group.
    pub group: String,
    /// Resource name.
    pub name: String,
}

/// Parses an id of `provider/type` (e.g. `Microsoft.Network/virtualNetworks`).
pub fn parse_id(id: &str, kind: &str, key: &str) -> Result<ResourceId, String> {
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    let (ns, ty) = kind.split_once('/').unwrap_or((kind, ""));
    match parts.as_slice() {
        ["subscriptions", s, "resourceGroups", g, "providers", n, t, name]
            if n.eq_ignore_ascii_case(ns) && t.eq_ignore_ascii_case(ty) =>
        {
            Ok(ResourceId {
                subscription: s.to_string(),
                group: g.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!(
            "{key}: '{id}' is not a {kind} resource id (/subscriptions/…/resourceGroups/…/providers/{kind}/NAME)"
        )),
    }
}

/// Storage account names: 3-24 lowercase letters and digits.
pub fn valid_account(a: &str) -> bool {
    (3..=24).contains(&a.len())
        && a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Bootstrap {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Bootstrap, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    /// Every check possible without calling Azure.
    pub fn check(&self) -> Result<(), String> {
        if !is_guid(&self.subscription) {
            return Err(format!(
                "subscription: '{}' is not a GUID",
                self.subscription
            ));
        }
        if !is_guid(&self.roles.hpc_cache_rp_object_id) {
            return Err("roles.hpc_cache_rp_object_id: not a GUID; get it with `az ad sp show --id 4392ab71-2ce2-4b0d-8770-b352745c73f5 --query id -o tsv`".into());
        }
        let a = &self.storage.account;
        if !valid_account(a) {
            return Err(format!(
                "storage.account: '{a}' must be 3-24 lowercase letters and digits"
            ));
        }
        for (k, c) in [
            ("storage.data_container", &self.storage.data_container),
            ("storage.log_container", &self.storage.log_container),
        ] {
            if !crate::remote::valid_container(c) {
                return Err(format!("{k}: '{c}' is not a valid container name (3-63 lowercase letters, digits, '-')"));
            }
        }
        if self.storage.data_container == self.storage.log_container {
            return Err("storage.log_container must differ from storage.data_container (AMLFS needs two containers)".into());
        }
        let n = &self.amlfs.name;
        let name_ok = (2..=80).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
        if !name_ok {
            return Err(format!("amlfs.name: '{n}' must be 2-80 letters, digits, '-' or '_', starting and ending with a letter or digit"));
        }
        let (_, min, max, step) = sku_limits(&self.amlfs.sku).ok_or_else(|| {
            format!(
                "amlfs.sku: '{}' is not one of AMLFS-Durable-Premium-40, -125, -250, -500",
                self.amlfs.sku
            )
        })?;
        let c = self.amlfs.capacity_tib;
        if c < min || c > max || !c.is_multiple_of(step) {
            return Err(format!(
                "amlfs.capacity_tib: {c} is not valid for {}: use a multiple of {step} from {min} to {max} (more needs a support ticket)",
                self.amlfs.sku
            ));
        }
        let days = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ];
        if !days.contains(&self.amlfs.maintenance_day.as_str()) {
            return Err(format!(
                "amlfs.maintenance_day: '{}' must be one of {}",
                self.amlfs.maintenance_day,
                days.join(", ")
            ));
        }
        let t = &self.amlfs.maintenance_time_utc;
        let time_ok = t.split_once(':').is_some_and(|(h, m)| {
            h.len() <= 2
                && m.len() == 2
                && h.parse::<u8>().is_ok_and(|h| h < 24)
                && m.parse::<u8>().is_ok_and(|m| m < 60)
        });
        if !time_ok {
            return Err(format!(
                "amlfs.maintenance_time_utc: '{t}' must be HH:MM (00:00-23:59)"
            ));
        }
        if !["1", "2", "3"].contains(&self.amlfs.zone.as_str()) {
            return Err(format!(
                "amlfs.zone: '{}' must be 1, 2 or 3 (the compute nodes' zone)",
                self.amlfs.zone
            ));
        }
        if !["2024-07-01", "2026-01-01"].contains(&self.amlfs.api_version.as_str()) {
            return Err("amlfs.api_version: use 2024-07-01 (default) or 2026-01-01".into());
        }
        let vnet = parse_id(
            &self.network.amlfs_vnet,
            "Microsoft.Network/virtualNetworks",
            "network.amlfs_vnet",
        )?;
        parse_id(
            &self.network.azhop_vnet,
            "Microsoft.Network/virtualNetworks",
            "network.azhop_vnet",
        )?;
        parse_id(
            &self.network.azhop_nsg,
            "Microsoft.Network/networkSecurityGroups",
            "network.azhop_nsg",
        )?;
        if vnet.subscription != self.subscription {
            return Err("network.amlfs_vnet: must be in `subscription`".into());
        }
        let subnet = Cidr::parse(&self.network.subnet_prefix)
            .map_err(|e| format!("network.subnet_prefix: {e}"))?;
        let compute = Cidr::parse(&self.network.compute_subnet_prefix)
            .map_err(|e| format!("network.compute_subnet_prefix: {e}"))?;
        let mut inside = false;
        for s in &self.network.amlfs_vnet_address_space {
            let space =
                Cidr::parse(s).map_err(|e| format!("network.amlfs_vnet_address_space: {e}"))?;
            inside |= space.contains(&subnet);
        }
        if !inside {
            return Err(format!(
                "network.subnet_prefix: {} is not inside the vnet's address space ({})",
                self.network.subnet_prefix,
                self.network.amlfs_vnet_address_space.join(", ")
            ));
        }
        if subnet.overlaps(&compute) {
            return Err("network.subnet_prefix overlaps network.compute_subnet_prefix: AMLFS needs a subnet of its own".into());
        }
        // The documented minimum per capacity (the preflight API has the last word).
        let need: u8 = match c {
            0..=16 => 27,
            17..=40 => 26,
            41..=92 => 25,
            93..=196 => 24,
            _ => 23,
        };
        if subnet.len > need {
            return Err(format!(
                "network.subnet_prefix: /{} is too small for {c} TiB; use /{need} or larger",
                subnet.len
            ));
        }
        match self.network.nsg.as_str() {
            "narrow" | "blog" => {}
            other => return Err(format!("network.nsg: '{other}' must be narrow or blog")),
        }
        if !(100..3100).contains(&self.network.nsg_priority) {
            return Err(
                "network.nsg_priority: must be 100-3099 (below az-hop's 3100 Deny rules)".into(),
            );
        }
        Ok(())
    }

    /// True when AMLFS goes in az-hop's own vnet (no peering needed).
    pub fn same_vnet(&self) -> bool {
        self.network
            .amlfs_vnet
            .eq_ignore_ascii_case(&self.network.azhop_vnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = include_str!("../../docs/bootstrap.example.toml");

    #[test]
    fn sample_passes_and_each_rule_bites() {
        let b = Bootstrap::parse(SAMPLE).unwrap();
        b.check().unwrap();
        let bad = |edit: &dyn Fn(&mut Bootstrap), want: &str| {
            let mut x = b.clone();
            edit(&mut x);
            let e = x.check().unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        bad(&|x| x.amlfs.capacity_tib = 12, "multiple of 8");
        bad(&|x| x.amlfs.sku = "Premium-9".into(), "amlfs.sku");
        bad(
            &|x| x.storage.account = "Bad_Name".into(),
            "storage.account",
        );
        bad(
            &|x| x.network.subnet_prefix = "10.9.0.0/24".into(),
            "not inside",
        );
        bad(
            &|x| x.network.subnet_prefix = "10.1.0.1/24".into(),
            "host bits",
        );
        bad(
            &|x| x.network.subnet_prefix = "10.1.0.0/29".into(),
            "too small",
        );
        bad(
            &|x| x.network.compute_subnet_prefix = "10.1.0.0/16".into(),
            "overlaps",
        );
        bad(&|x| x.amlfs.maintenance_time_utc = "24:00".into(), "HH:MM");
        bad(&|x| x.network.nsg = "open".into(), "narrow or blog");
        bad(
            &|x| x.roles.hpc_cache_rp_object_id = "4392ab71".into(),
            "az ad sp show",
        );
        bad(
            &|x| x.network.azhop_nsg = "/subscriptions/x/nsg".into(),
            "network.azhop_nsg",
        );
        assert!(Bootstrap::parse("subscription = 1").is_err());
    }

    #[test]
    fn cidrs() {
        let a = Cidr::parse("10.0.0.0/16").unwrap();
        assert!(a.contains(&Cidr::parse("10.0.5.0/24").unwrap()));
        assert!(!a.contains(&Cidr::parse("10.1.0.0/24").unwrap()));
        assert!(a.overlaps(&Cidr::parse("10.0.0.0/8").unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/24").unwrap().size(), 256);
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }
}
