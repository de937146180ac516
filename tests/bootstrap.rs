//! `hopstage bootstrap`: every ARM request body of the plan validates against
//! the official REST specs (and the validator rejects what it should), and the
//! generated cluster-init script is clean, secret-free and idempotent when run
//! with the system commands stubbed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::util::swagger::Specs;
use crate::util::text;

const STORAGE: &str =
    "storage/resource-manager/Microsoft.Storage/Storage/stable/2025-01-01/storage.json";
const BLOB: &str = "storage/resource-manager/Microsoft.Storage/Storage/stable/2025-01-01/blob.json";
const AUTH: &str = "authorization/resource-manager/Microsoft.Authorization/Authorization/stable/2022-04-01/authorization-RoleAssignmentsCalls.json";
const VNET: &str =
    "network/resource-manager/Microsoft.Network/Network/stable/2025-05-01/virtualNetwork.json";
const NSG: &str = "network/resource-manager/Microsoft.Network/Network/stable/2025-05-01/networkSecurityGroup.json";

fn amlfs_spec(version: &str) -> String {
    format!("storagecache/resource-manager/Microsoft.StorageCache/StorageCache/stable/{version}/amlfilesystem.json")
}

fn spec_for(kind: &str, api: &str) -> String {
    match kind {
        "storage_account" => STORAGE.into(),
        "container" => BLOB.into(),
        "role_assignment" => AUTH.into(),
        "subnet" | "peering" => VNET.into(),
        "security_rule" => NSG.into(),
        "subnet_check" | "amlfs" => amlfs_spec(api),
        other => panic!("no spec for {other}"),
    }
}

fn plan_json(config: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hopstage"))
        .args(["bootstrap", "plan", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn example() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bootstrap.example.toml"),
    )
    .unwrap()
}

#[test]
fn every_plan_body_validates_against_the_official_specs() {
    let mut specs = Specs::open();
    let variants = [
        example(),
        example().replace("nsg = \"narrow\"", "nsg = \"blog\""),
        example().replace(
            "api_version = \"2024-07-01\"",
            "api_version = \"2026-01-01\"",
        ),
        example()
            .replace("hns = true", "hns = false")
            .replace("amlfs-vnet\"", "hpcvnet\""),
    ];
    let mut checked = BTreeMap::new();
    for config in &variants {
        for step in plan_json(config) {
            let kind = step["kind"].as_str().unwrap();
            let api = step["api_version"].as_str().unwrap();
            let errs = specs.validate(
                &spec_for(kind, api),
                &step["method"].as_str().unwrap().to_lowercase(),
                step["path"].as_str().unwrap(),
                &step["body"],
            );
            assert!(
                errs.is_empty(),
                "{kind} {}: {errs:#?}\nbody: {}",
                step["path"],
                step["body"]
            );
            *checked.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(checked.len(), 8, "{checked:?}");
}

#[test]
fn the_spec_check_rejects_drift() {
    let mut specs = Specs::open();
    let steps = plan_json(&example());
    let find = |kind: &str| steps.iter().find(|s| s["kind"] == kind).unwrap().clone();
    let check = |specs: &mut Specs, step: &Value, body: &Value| {
        specs.validate(
            &spec_for(
                step["kind"].as_str().unwrap(),
                step["api_version"].as_str().unwrap(),
            ),
            &step["method"].as_str().unwrap().to_lowercase(),
            step["path"].as_str().unwrap(),
            body,
        )
    };
    let amlfs = find("amlfs");
    // The docs' sample puts zones under properties and says timeOfDay: both wrong.
    let mut b = amlfs["body"].clone();
    b["properties"]["zones"] = json!(["1"]);
    b["properties"]["maintenanceWindow"] = json!({"dayOfWeek": "Saturday", "timeOfDay": "23:00"});
    let errs = check(&mut specs, &amlfs, &b);
    assert!(
        errs.iter().any(|e| e.contains("properties.zones")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|e| e.contains("timeOfDay")), "{errs:?}");
    let mut b = amlfs["body"].clone();
    b["properties"]
        .as_object_mut()
        .unwrap()
        .remove("filesystemSubnet");
    b["properties"]["maintenanceWindow"]["dayOfWeek"] = json!("Caturday");
    b["properties"]["maintenanceWindow"]["timeOfDayUTC"] = json!("25:00");
    let errs = check(&mut specs, &amlfs, &b);
    assert!(
        errs.iter()
            .any(|e| e.contains("'filesystemSubnet' missing")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|e| e.contains("Caturday")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("25:00")), "{errs:?}");
    let rule = find("security_rule");
    let mut b = rule["body"].clone();
    b["properties"]["provisioningState"] = json!("Succeeded");
    b["properties"]["protocol"] = json!("Carrier-Pigeon");
    let errs = check(&mut specs, &rule, &b);
    assert!(errs.iter().any(|e| e.contains("read-only")), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.contains("Carrier-Pigeon")),
        "{errs:?}"
    );
    let sa = find("storage_account");
    let mut b = sa["body"].clone();
    b["properties"]["accountKey"] = json!("x");
    let errs = check(&mut specs, &sa, &b);
    assert!(errs.iter().any(|e| e.contains("accountKey")), "{errs:?}");
}

#[test]
fn plan_refuses_bad_configs_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(
        &path,
        example().replace("capacity_tib = 8", "capacity_tib = 12"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hopstage"))
        .args(["bootstrap", "plan", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("amlfs.capacity_tib: 12") && t.contains("multiple of 8"),
        "{t}"
    );
    assert_eq!(t.trim().lines().count(), 1, "{t}");
}

/// Stubs for the system commands the script calls; each logs its call.
const STUBS: &[(&str, &str)] = &[
    ("modinfo", "[ -e \"$HOPSTAGE_ROOT/.lustre\" ]"),
    ("modprobe", "true"),
    ("mountpoint", "[ -e \"$HOPSTAGE_ROOT/.mounted\" ]"),
    ("mount", "touch \"$HOPSTAGE_ROOT/.mounted\""),
    ("rpm", "true"),
    ("dnf", "case \"$1\" in list) echo \"amlfs-lustre-client-2.15.5_41_gc010524-$(uname -r | sed -e \"s/\\.$(uname -m)$//\" | sed -re 's/[-_]/\\./g')-1.noarch  2.15.5  amlfs\";; install) touch \"$HOPSTAGE_ROOT/.lustre\";; esac"),
    ("apt-get", "case \"$1\" in install) touch \"$HOPSTAGE_ROOT/.lustre\";; esac"),
    ("apt-cache", "echo amlfs-lustre-client-2.15.4-42-gd6d405d"),
    ("curl", "echo KEY"),
    ("gpg", "cat"),
    ("dpkg", "true"),
    ("systemctl", "true"),
    ("blobfuse2", "true"),
    ("hopstage", "true"),
];

fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name() != "calls.log")
        .map(|e| {
            (
                e.path().strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn cluster_init_script_is_clean_secret_free_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("91-AMLFS.sh");
    let out = Command::new(env!("CARGO_BIN_EXE_hopstage"))
        .args([
            "bootstrap",
            "cluster-init",
            "--mgs",
            "10.1.0.4",
            "--account",
            "azhopdata01",
        ])
        .args([
            "--client-id",
            "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "--slurm-hooks",
            "-o",
        ])
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let body = std::fs::read_to_string(&script).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "bash -n: {}", text(&syntax));
    let sc = Command::new("shellcheck").arg(&script).output().unwrap_or_else(|e| {
        panic!("shellcheck not runnable ({e}): install Debian's shellcheck (scripts/deps.sh does this)")
    });
    assert!(sc.status.success(), "shellcheck:\n{}", text(&sc));
    // No secret: no account key, SAS or token, base64 or otherwise.
    let key_like = regex::Regex::new(r"[A-Za-z0-9+/]{40,}={0,2}").unwrap();
    assert!(!key_like.is_match(&body), "a key-like string in the script");
    for bad in [
        "AccountKey",
        "account-key",
        "sig=",
        "accountKey",
        "SharedAccessSignature",
    ] {
        assert!(!body.contains(bad), "{bad} in the script");
    }
    assert!(body.contains("mode: msi"));

    for (os, release) in [
        ("el8", "ID=almalinux\nVERSION_ID=\"8.7\"\n"),
        (
            "ubuntu",
            "ID=ubuntu\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\n",
        ),
    ] {
        let root = dir.path().join(format!("root-{os}"));
        let bin = dir.path().join(format!("bin-{os}"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(root.join("etc/os-release"), release).unwrap();
        std::fs::write(root.join("etc/fstab"), "# static\n").unwrap();
        for (name, action) in STUBS {
            if os == "ubuntu" && *name == "dnf" {
                continue;
            }
            let p = bin.join(name);
            std::fs::write(
                &p,
                format!(
                    "#!/bin/bash\necho \"{name} $*\" >> \"$HOPSTAGE_ROOT/calls.log\"\n{action}\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let run = || {
            let o = Command::new("bash")
                .arg(&script)
                .env("HOPSTAGE_ROOT", &root)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            assert!(o.status.success(), "{os}: {}", text(&o));
            let calls = std::fs::read_to_string(root.join("calls.log")).unwrap_or_default();
            std::fs::remove_file(root.join("calls.log")).ok();
            calls
        };
        let first = run();
        let files = snapshot(&root);
        let second = run();
        assert!(
            first.contains("mount ")
                && (first.contains("dnf install") || first.contains("apt-get install")),
            "{os}: {first}"
        );
        assert!(
            first.contains("hopstage slurm install --write"),
            "{os}: {first}"
        );
        // Second run: nothing installed, nothing mounted again, no file changed.
        assert!(
            !second.contains("mount ") && !second.contains(" install -y"),
            "{os}: second run did work:\n{second}"
        );
        assert_eq!(files, snapshot(&root), "{os}: the second run changed files");
        let fstab = std::fs::read_to_string(root.join("etc/fstab")).unwrap();
        assert_eq!(fstab.matches(" /AMLFS lustre ").count(), 1, "{fstab}");
        assert!(fstab.contains("10.1.0.4@tcp:/lustrefs /AMLFS lustre noatime,flock,_netdev 0 0"));
        let yaml = root.join("etc/blobfuse2/home.yaml");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&yaml).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(std::fs::read_to_string(&yaml)
            .unwrap()
            .contains("appid: aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"));
        assert!(root
            .join("opt/cycle/jetpack/scripts/onTerminate.sh")
            .exists());
    }
}
