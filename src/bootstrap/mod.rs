//! `hopstage bootstrap`: provisioning around hopstage for an az-hop cluster,
//! declared in `bootstrap.toml` ([`config`]), turned into the ordered ARM
//! requests of [`plan`], and the node-side mount set-up ([`script`]).
//!
//! Data flow: TOML → `Bootstrap::check` (every offline rule) → `plan::plan`
//! (bodies that validate against the official REST specs) → printed for
//! review. No secret is read, written or printed anywhere in this module.

pub mod apply;
pub mod arm;
pub mod config;
pub mod plan;
pub mod script;
pub mod terraform;

use std::path::Path;

use crate::cli::BootstrapCommand;

/// Runs one `hopstage bootstrap ...` command; returns the exit code. `auth`
/// is the global `--auth` (the Entra ID source for Azure Resource Manager).
pub fn run(cmd: BootstrapCommand, auth: Option<&str>) -> i32 {
    match cmd {
        BootstrapCommand::Plan {
            config,
            json,
            format,
            arm_endpoint: Some(endpoint),
        } if !json && format == "text" => {
            online(&config, &endpoint, auth, 10, |arm, b| async move {
                live_plan(&arm, &b).await
            })
        }
        BootstrapCommand::Plan {
            config,
            json,
            format,
            ..
        } => plan_cmd(&config, if json { "json" } else { &format }),
        BootstrapCommand::Apply {
            target,
            role_wait,
            poll,
            json,
        } => online(
            &target.config,
            &target.arm_endpoint,
            auth,
            poll,
            |arm, b| async move { apply_cmd(&arm, &b, role_wait, json).await },
        ),
        BootstrapCommand::Status { target, json } => online(
            &target.config,
            &target.arm_endpoint,
            auth,
            10,
            |arm, b| async move { status_cmd(&arm, &b, json).await },
        ),
        BootstrapCommand::ClusterInit {
            mgs,
            mount,
            account,
            container,
            client_id,
            flat,
            slurm_hooks,
            output,
        } => {
            let ci = script::ClusterInit {
                mgs,
                mount,
                account,
                container,
                client_id,
                hns: !flat,
                slurm_hooks,
            };
            if let Err(e) = ci.check() {
                eprintln!("hopstage: {e}");
                return 2;
            }
            let text = ci.render();
            match output {
                None => out(&text),
                Some(path) => {
                    use std::os::unix::fs::PermissionsExt;
                    let r = std::fs::write(&path, text).and_then(|()| {
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    });
                    match r {
                        Ok(()) => {
                            eprintln!("wrote {} (copy it to az-hop's playbooks/roles/cyclecloud_cluster/projects/common/cluster-init/scripts/ and run ./install.sh cccluster)", path.display());
                            0
                        }
                        Err(e) => {
                            eprintln!("hopstage: {}: {e}", path.display());
                            2
                        }
                    }
                }
            }
        }
    }
}

/// Loads and checks a bootstrap file.
pub fn load(path: &Path) -> Result<config::Bootstrap, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let b = config::Bootstrap::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    b.check().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(b)
}

fn plan_cmd(path: &Path, format: &str) -> i32 {
    let b = match load(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hopstage: {e}");
            return 2;
        }
    };
    let steps = plan::plan(&b);
    if format == "terraform" {
        return out(&terraform::render(&steps));
    }
    if format == "json" {
        return match serde_json::to_string_pretty(&steps) {
            Ok(t) => out(&format!("{t}\n")),
            Err(e) => {
                eprintln!("hopstage: {e}");
                2
            }
        };
    }
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} ARM requests, in order. `hopstage bootstrap apply` reads each resource first and writes only what is missing or different.",
        steps.len()
    );
    for (i, s) in steps.iter().enumerate() {
        let _ = writeln!(t, "\n{:>2}. {}", i + 1, s.title);
        let _ = writeln!(t, "    {} {}", s.method, s.url_path());
        let _ = writeln!(
            t,
            "    {}",
            serde_json::to_string(&s.body).unwrap_or_default()
        );
        if !s.create_only.is_empty() {
            let _ = writeln!(t, "    create-only: {}", s.create_only.join(", "));
        }
    }
    if b.network.nsg == "blog" {
        let _ = writeln!(t, "\nWARNING: nsg = \"blog\" turns az-hop's DenyVnetInbound/DenyVnetOutbound (3100) into Allow rules: all traffic inside the vnet and from peered vnets is then allowed. The default (narrow) allows only Lustre's ports between the two subnets.");
    }
    out(&t)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn out(text: &str) -> i32 {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("hopstage: stdout: {e}");
            2
        }
    }
}

/// Loads the config, builds the ARM client and a runtime, runs `f`.
fn online<F, Fut>(config: &Path, endpoint: &str, auth: Option<&str>, poll: u64, f: F) -> i32
where
    F: FnOnce(arm::Arm, config::Bootstrap) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let b = match load(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hopstage: {e}");
            return 2;
        }
    };
    let loopback =
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:");
    let credential = if loopback {
        None
    } else {
        match crate::auth::token_credential(auth.unwrap_or("auto"), None) {
            Ok(crate::auth::Auth::Token { credential, .. }) => Some(credential),
            Ok(_) => None,
            Err(e) => {
                eprintln!("hopstage: {e}");
                return 2;
            }
        }
    };
    let mut client = match arm::Arm::new(endpoint, credential) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hopstage: {e}");
            return 2;
        }
    };
    client.poll = std::time::Duration::from_secs(poll.max(1));
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f(client, b)),
        Err(e) => {
            eprintln!("hopstage: tokio runtime: {e}");
            2
        }
    }
}

async fn apply_cmd(arm: &arm::Arm, b: &config::Bootstrap, role_wait: u64, json: bool) -> i32 {
    let steps = plan::plan(b);
    let opts = apply::Options {
        role_wait: std::time::Duration::from_secs(role_wait),
    };
    let result = apply::apply(arm, &steps, &opts, |d| {
        if !json {
            let what = match d.action {
                apply::Action::Created => "created",
                apply::Action::Updated => "updated",
                apply::Action::AlreadyCorrect => "already correct",
                apply::Action::Checked => "checked",
            };
            eprintln!("{what:>16}  {}", d.title);
        }
    })
    .await;
    match result {
        Ok(done) => {
            let fs = fs_path(b);
            let info = arm
                .get(&format!("{fs}?api-version={}", b.amlfs.api_version))
                .await
                .ok()
                .flatten();
            let mgs = info.as_ref().and_then(|v| {
                v["properties"]["clientInfo"]["mgsAddress"]
                    .as_str()
                    .map(str::to_string)
            });
            let mount = info.as_ref().and_then(|v| {
                v["properties"]["clientInfo"]["mountCommand"]
                    .as_str()
                    .map(str::to_string)
            });
            if json {
                let v =
                    serde_json::json!({"steps": done, "mgs_address": mgs, "mount_command": mount});
                return out(&format!("{v}\n"));
            }
            let changed = done
                .iter()
                .filter(|d| matches!(d.action, apply::Action::Created | apply::Action::Updated))
                .count();
            let mut t = format!(
                "{changed} change(s) made; {} step(s) already as wanted.\n",
                done.len() - changed
            );
            if let Some(m) = &mgs {
                t.push_str(&format!("AMLFS MGS address: {m}\nmount: {}\nnext: hopstage bootstrap cluster-init --mgs {m} --account {} ...\n", mount.unwrap_or_default(), b.storage.account));
            }
            out(&t)
        }
        Err(e) => {
            eprintln!("hopstage: bootstrap apply stopped: {e} (fix it and rerun: finished steps are not redone)");
            2
        }
    }
}

fn fs_path(b: &config::Bootstrap) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.StorageCache/amlFilesystems/{}",
        b.subscription, b.resource_group, b.amlfs.name
    )
}

async fn status_cmd(arm: &arm::Arm, b: &config::Bootstrap, json: bool) -> i32 {
    let mut rows = Vec::new();
    for s in plan::plan(b).iter().filter(|s| s.method == "PUT") {
        let (state, detail) = match arm.get(&s.url_path()).await {
            Ok(None) => ("missing".to_string(), String::new()),
            Ok(Some(v)) => {
                let p = &v["properties"];
                let state = p["provisioningState"]
                    .as_str()
                    .unwrap_or("present")
                    .to_string();
                let detail = match s.kind {
                    plan::Kind::Amlfs => format!(
                        "health {}; {}",
                        p["health"]["state"].as_str().unwrap_or("?"),
                        p["clientInfo"]["mountCommand"]
                            .as_str()
                            .unwrap_or("no mount command yet")
                    ),
                    plan::Kind::Peering => {
                        format!("peering {}", p["peeringState"].as_str().unwrap_or("?"))
                    }
                    _ if !apply::diff(&s.body, &v).is_empty() => {
                        "differs from the config (apply fixes what can change)".into()
                    }
                    _ => String::new(),
                };
                (state, detail)
            }
            Err(e) => ("error".to_string(), e.to_string()),
        };
        rows.push(serde_json::json!({"resource": s.title, "state": state, "detail": detail}));
    }
    if json {
        return out(&format!("{}\n", serde_json::Value::Array(rows)));
    }
    let mut t = String::new();
    for r in &rows {
        t.push_str(&format!(
            "{:<10} {}  {}\n",
            r["state"].as_str().unwrap_or(""),
            r["resource"].as_str().unwrap_or(""),
            r["detail"].as_str().unwrap_or("")
        ));
    }
    let bad = rows
        .iter()
        .any(|r| r["state"] != "Succeeded" && r["state"] != "present");
    let code = out(&t);
    if bad {
        1
    } else {
        code
    }
}

async fn live_plan(arm: &arm::Arm, b: &config::Bootstrap) -> i32 {
    let steps = plan::plan(b);
    match apply::preview(arm, &steps).await {
        Ok(verdicts) => {
            let mut t = String::new();
            for (i, (s, v)) in steps.iter().zip(&verdicts).enumerate() {
                t.push_str(&format!(
                    "{:>2}. {}  => {v}\n    {} {}\n",
                    i + 1,
                    s.title,
                    s.method,
                    s.url_path()
                ));
            }
            let blocked = verdicts.iter().any(|v| {
                v.starts_with("REFUSED") || v.starts_with("FAILED") || v.starts_with("CHECK FAILS")
            });
            let code = out(&t);
            if blocked {
                1
            } else {
                code
            }
        }
        Err(e) => {
            eprintln!("hopstage: {e}");
            2
        }
    }
}
