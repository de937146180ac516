//! `hopstage bootstrap`: provisioning around hopstage for an az-hop cluster,
//! declared in `bootstrap.toml` ([`config`]), turned into the ordered ARM
//! requests of [`plan`], and the node-side mount set-up ([`script`]).
//!
//! Data flow: TOML → `Bootstrap::check` (every offline rule) → `plan::plan`
//! (bodies that validate against the official REST specs) → printed for
//! review. No secret is read, written or printed anywhere in this module.

pub mod config;
pub mod plan;
pub mod script;

use std::path::Path;

use crate::cli::BootstrapCommand;

/// Runs one `hopstage bootstrap ...` command; returns the exit code.
pub fn run(cmd: BootstrapCommand) -> i32 {
    match cmd {
        BootstrapCommand::Plan { config, json } => plan_cmd(&config, json),
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

fn plan_cmd(path: &Path, json: bool) -> i32 {
    let b = match load(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hopstage: {e}");
            return 2;
        }
    };
    let steps = plan::plan(&b);
    if json {
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
        "{} ARM requests, in order. Review them; `bootstrap apply` (GET each resource, write only what is missing or different) is not built yet.",
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
