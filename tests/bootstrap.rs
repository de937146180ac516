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
        "subnet_size" | "subnet_check" | "amlfs" => amlfs_spec(api),
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
        example().replace("hns = true", "hns = false").replace(
            "resourceGroups/azhop-data/providers/Microsoft.Network/virtualNetworks/amlfs-vnet",
            "resourceGroups/azhop/providers/Microsoft.Network/virtualNetworks/hpcvnet",
        ),
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
    assert_eq!(checked.len(), 9, "{checked:?}");
    // The last variant puts AMLFS in az-hop's own vnet: no peering.
    assert!(!plan_json(&variants[3])
        .iter()
        .any(|s| s["kind"] == "peering"));
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

use crate::util::fake_arm::FakeArm;

fn config_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("bootstrap.toml");
    std::fs::write(&p, example()).unwrap();
    p
}

/// Rewrites the config with the maintenance window on Sunday.
fn move_maintenance_to_sunday(config: &Path) {
    let text = example().replace(
        "maintenance_day = \"Saturday\"",
        "maintenance_day = \"Sunday\"",
    );
    std::fs::write(config, text).unwrap();
}

/// `hopstage bootstrap apply` against the fake, with short waits.
fn apply_command(arm: &FakeArm, config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hopstage"));
    c.args(["bootstrap", "apply", "--role-wait", "1", "--poll", "1"])
        .arg("--arm-endpoint")
        .arg(arm.endpoint())
        .arg("--config")
        .arg(config);
    c
}

fn apply(arm: &FakeArm, config: &Path) -> (Option<i32>, String, String) {
    let o = apply_command(arm, config).arg("--json").output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The read-only preflight POSTs every apply makes.
const PREFLIGHTS: [&str; 2] = [
    "POST Microsoft.StorageCache/getRequiredAmlFSSubnetsSize",
    "POST Microsoft.StorageCache/checkAmlFSSubnets",
];

fn writes(arm: &FakeArm) -> Vec<String> {
    arm.calls()
        .into_iter()
        .filter(|(m, _)| m == "PUT" || m == "POST")
        .map(|(m, p)| {
            format!(
                "{m} {}",
                p.rsplit('/')
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("/")
            )
        })
        .collect()
}

#[test]
fn apply_creates_in_order_waits_for_operations_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let arm = FakeArm::start();
    let (code, out, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");
    let steps = plan_json(&example());
    let roles: Vec<String> = steps
        .iter()
        .filter(|s| s["kind"] == "role_assignment")
        .map(|s| {
            s["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        writes(&arm),
        vec![
            "PUT storageAccounts/azhopdata01".to_string(),
            "PUT containers/home".into(),
            "PUT containers/log".into(),
            format!("PUT roleAssignments/{}", roles[0]),
            format!("PUT roleAssignments/{}", roles[1]),
            "POST Microsoft.StorageCache/getRequiredAmlFSSubnetsSize".into(),
            "PUT subnets/amlfs".into(),
            "PUT virtualNetworkPeerings/hopstage-to-hpcvnet".into(),
            "PUT virtualNetworkPeerings/hopstage-to-amlfs-vnet".into(),
            "POST Microsoft.StorageCache/checkAmlFSSubnets".into(),
            "PUT amlFilesystems/azhop-lustre".into(),
            "PUT securityRules/HopstageAmlfsLustreOut".into(),
            "PUT securityRules/HopstageAmlfsLustreIn".into(),
        ]
    );
    // Every write was preceded by a read of the same resource.
    let calls = arm.calls();
    for (i, (m, p)) in calls.iter().enumerate() {
        if m == "PUT" {
            assert!(
                calls[..i].iter().any(|(m2, p2)| m2 == "GET" && p2 == p),
                "PUT {p} without a GET first"
            );
        }
    }
    // Both peerings were read back (Connected) before AMLFS was created.
    let second = calls
        .iter()
        .position(|(m, p)| m == "PUT" && p.ends_with("hopstage-to-amlfs-vnet"))
        .unwrap();
    let fs = calls
        .iter()
        .position(|(m, p)| m == "PUT" && p.contains("amlFilesystems"))
        .unwrap();
    assert!(calls[second..fs]
        .iter()
        .any(|(m, p)| m == "GET" && p.ends_with("hopstage-to-hpcvnet")));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["mgs_address"], "10.1.0.4", "{v}");
    // The long-running operations were polled.
    assert!(
        calls.iter().any(|(_, p)| p.starts_with("/ops/"))
            && calls.iter().any(|(_, p)| p.starts_with("/locations/"))
    );
    // Second apply: no resource written (the preflight POST is a check, not a change).
    arm.clear_calls();
    let (code, out, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(writes(&arm), PREFLIGHTS);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["action"] == "already_correct" || s["action"] == "checked"),
        "{v}"
    );
    // status reports everything and the mount command.
    let o = Command::new(env!("CARGO_BIN_EXE_hopstage"))
        .args(["bootstrap", "status", "--arm-endpoint"])
        .arg(arm.endpoint())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("health Available") && t.contains("10.1.0.4@tcp:/lustrefs"),
        "{t}"
    );
    assert!(t.contains("peering Connected"), "{t}");
}

#[test]
fn apply_survives_throttling_and_existing_role_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let arm = FakeArm::start();
    arm.knobs(|k| {
        k.throttle = vec![2, 9];
        k.role_conflict_once = true;
    });
    let (code, out, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let actions: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[3], "already_correct",
        "409 RoleAssignmentExists is success: {v}"
    );
    // The throttled requests were sent again.
    let calls = arm.calls();
    assert_eq!(calls[1], calls[2], "{calls:?}");
}

#[test]
fn apply_reports_a_failed_file_system_and_resumes_after_an_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let amlfs = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/azhop-data/providers/Microsoft.StorageCache/amlFilesystems/azhop-lustre";
    // 1. Provisioning fails: one line with the service's reason; the rerun
    //    says what to do instead of writing again.
    let arm = FakeArm::start();
    arm.knobs(|k| k.amlfs_fail = true);
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("subnet has no room") && err.contains("rerun"),
        "{err}"
    );
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("exists in state Failed") && err.contains("delete it"),
        "{err}"
    );
    arm.remove(amlfs);
    arm.knobs(|k| k.amlfs_fail = false);
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");

    // 2. Killed while AMLFS is being created: the rerun waits for it, no second PUT.
    let arm = FakeArm::start();
    arm.knobs(|k| k.amlfs_ticks = 1000);
    let mut child = apply_command(&arm, &config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !arm.calls().iter().any(|(m, p)| m == "PUT" && p == amlfs) {
        assert!(
            std::time::Instant::now() < deadline,
            "apply never reached AMLFS"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(arm
        .calls()
        .iter()
        .all(|(_, p)| !p.contains("securityRules")));
    // Azure finishes the creation while nobody watches; the rerun finds it
    // Creating and waits.
    arm.finish_soon();
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");
    let puts = arm
        .calls()
        .iter()
        .filter(|(m, p)| m == "PUT" && p == amlfs)
        .count();
    assert_eq!(puts, 1, "the file system was PUT again");
    assert!(arm
        .calls()
        .iter()
        .any(|(m, p)| m == "PUT" && p.contains("securityRules")));
}

#[test]
fn apply_refuses_to_change_a_create_only_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let arm = FakeArm::start();
    let sa = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/azhop-data/providers/Microsoft.Storage/storageAccounts/azhopdata01";
    arm.seed(
        sa,
        json!({"id": sa, "location": "westeurope", "kind": "StorageV2", "sku": {"name": "Standard_LRS"},
               "properties": {"isHnsEnabled": false, "allowSharedKeyAccess": true, "allowBlobPublicAccess": false,
                              "minimumTlsVersion": "TLS1_2", "supportsHttpsTrafficOnly": true, "provisioningState": "Succeeded"}}),
    );
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("properties.isHnsEnabled") && err.contains("cannot change"),
        "{err}"
    );
    assert!(writes(&arm).is_empty(), "{:?}", writes(&arm));
}

#[test]
fn apply_patches_a_changed_maintenance_window_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let arm = FakeArm::start();
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");
    move_maintenance_to_sunday(&config);
    arm.clear_calls();
    let (code, out, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");
    let patches: Vec<_> = arm
        .calls()
        .into_iter()
        .filter(|(m, _)| m == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "{:?}", arm.calls());
    assert!(patches[0].1.ends_with("/amlFilesystems/azhop-lustre"));
    assert_eq!(writes(&arm), PREFLIGHTS);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["steps"][10]["action"], "updated", "{v}");
}

#[test]
fn a_live_plan_shows_what_apply_would_do_and_a_small_subnet_stops_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let arm = FakeArm::start();
    let live_plan = |arm: &FakeArm, want: i32| {
        let o = Command::new(env!("CARGO_BIN_EXE_hopstage"))
            .args(["bootstrap", "plan", "--arm-endpoint"])
            .arg(arm.endpoint())
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(want), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let fresh = live_plan(&arm, 0);
    assert_eq!(fresh.matches("=> create").count(), 11, "{fresh}");
    assert!(
        writes(&arm).iter().all(|w| w.starts_with("POST")),
        "a plan wrote: {:?}",
        writes(&arm)
    );
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(0), "{err}");
    move_maintenance_to_sunday(&config);
    let changed = live_plan(&arm, 0);
    assert_eq!(
        changed.matches("=> already correct").count(),
        10,
        "{changed}"
    );
    assert!(
        changed.contains("=> update (properties.maintenanceWindow.dayOfWeek)"),
        "{changed}"
    );
    std::fs::write(
        &config,
        example().replace("capacity_tib = 8", "capacity_tib = 16"),
    )
    .unwrap();
    let refused = live_plan(&arm, 1);
    assert!(
        refused.contains("REFUSED") && refused.contains("properties.storageCapacityTiB"),
        "{refused}"
    );

    let arm = FakeArm::start();
    arm.knobs(|k| k.subnet_need = Some(300));
    std::fs::write(&config, example()).unwrap();
    let (code, _, err) = apply(&arm, &config);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("needs 300") && err.contains("larger prefix"),
        "{err}"
    );
    assert!(!writes(&arm)
        .iter()
        .any(|w| w.contains("subnets/") || w.contains("amlFilesystems/")));
}
