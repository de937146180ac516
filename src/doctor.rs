//! `hopstage doctor [REMOTE] [--dest DIR]`: one command that says what is
//! wrong, each check a pass/fail line with a fix hint.
//!
//! Checks: the config file (found, parses, private if it holds a secret),
//! the credential (which source won), the account and container (one cheap
//! list call), clock skew against the service's `Date`, the destination (on
//! Lustre: fsname, OSTs, default layout; free space), the open-file limit,
//! and the Slurm hooks. Never prints a secret.

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{self, Sources};
use crate::error::ExitCode;
use crate::remote;
use crate::store::BlobStore;

/// One check.
#[derive(Debug, Serialize)]
pub struct Check {
    /// Short name.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do, when it failed.
    pub fix: Option<String>,
}

fn pass(name: &str, detail: String) -> Check {
    Check {
        name: name.into(),
        ok: true,
        detail,
        fix: None,
    }
}

fn fail(name: &str, detail: String, fix: &str) -> Check {
    Check {
        name: name.into(),
        ok: false,
        detail,
        fix: Some(fix.into()),
    }
}

/// Runs every check.
pub async fn run(
    flags: config::AccountFlags,
    remote_arg: Option<&str>,
    dest: Option<&Path>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    // Config file.
    match config::config_path() {
        Some(p) if p.exists() => match config::load_file(&p) {
            Ok(_) => {
                let mode = std::fs::metadata(&p)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0);
                checks.push(pass("config", format!("{} (mode {mode:04o})", p.display())));
            }
            Err(e) => checks.push(fail(
                "config",
                crate::redact::redact(&e.to_string()),
                "fix the file as the message says",
            )),
        },
        Some(p) => checks.push(fail(
            "config",
            format!(
                "HOPSTAGE_CONFIG names {}, which does not exist",
                p.display()
            ),
            "create it or unset HOPSTAGE_CONFIG",
        )),
        None => checks.push(pass("config", "none (environment and flags only)".into())),
    }
    // Credentials and the container.
    let remote_arg = remote_arg.unwrap_or("home:/");
    let sources = match Sources::load(flags) {
        Ok(s) => s,
        Err(e) => {
            checks.push(fail(
                "credentials",
                crate::redact::redact(&e.to_string()),
                "fix the configuration",
            ));
            return finish_local(checks, dest);
        }
    };
    let target = remote::parse(remote_arg)
        .map_err(|e| e.to_string())
        .and_then(|spec| sources.resolve(&spec).map_err(|e| e.to_string()));
    match target {
        Err(e) => checks.push(fail(
            "credentials",
            crate::redact::redact(&e),
            "set AZURE_STORAGE_CONNECTION_STRING, or account/auth in the config file",
        )),
        Ok(t) => {
            checks.push(pass(
                "credentials",
                format!(
                    "{} for account '{}' at {}",
                    t.auth.describe(),
                    t.account,
                    t.endpoint
                ),
            ));
            match BlobStore::new(&t, Arc::default()) {
                Err(e) => checks.push(fail("container", e.to_string(), "check the endpoint")),
                Ok(store) => {
                    let started = std::time::SystemTime::now();
                    match store.server_date().await {
                        Ok(date) => {
                            checks.push(pass(
                                "container",
                                format!("{} is reachable and readable", t.display_container()),
                            ));
                            if let Some(server) = date {
                                let skew = (crate::engine::local::unix_secs(started)
                                    - server.unix_timestamp())
                                .abs();
                                if skew > 300 {
                                    checks.push(fail(
                                        "clock",
                                        format!("{skew} s off the service's clock"),
                                        "run chrony/ntp: Shared Key and SAS requests fail beyond 15 minutes of skew",
                                    ));
                                } else {
                                    checks.push(pass(
                                        "clock",
                                        format!("{skew} s off the service's clock"),
                                    ));
                                }
                            }
                        }
                        Err(e) => checks.push(fail(
                            "container",
                            crate::redact::redact(&e.to_string()),
                            "check the account, container and credential named above",
                        )),
                    }
                }
            }
        }
    }
    finish_local(checks, dest)
}

fn finish_local(mut checks: Vec<Check>, dest: Option<&Path>) -> Vec<Check> {
    if let Some(d) = dest {
        let existing = d.ancestors().find(|a| a.is_dir());
        match existing.and_then(|a| std::fs::File::open(a).ok()) {
            None => checks.push(fail(
                "destination",
                format!("{} has no existing ancestor", d.display()),
                "create it",
            )),
            Some(f) => {
                match crate::lustre::detect(d.ancestors().find(|a| a.is_dir()).unwrap_or(d)) {
                    Some(l) => {
                        let layout = crate::lustre::read_layout(existing.unwrap_or(d))
                            .map(|x| crate::lustre::describe(&x.layout).replace('\n', "; "))
                            .unwrap_or_else(|_| "file-system default".into());
                        checks.push(pass(
                            "lustre",
                            format!(
                                "{} is on Lustre{} with {} OSTs; default layout: {layout}",
                                d.display(),
                                l.fsname.map(|n| format!(" '{n}'")).unwrap_or_default(),
                                l.osts
                            ),
                        ));
                    }
                    None => checks.push(pass(
                        "lustre",
                        format!("{} is not on Lustre (layouts are skipped)", d.display()),
                    )),
                }
                match crate::lustre::sys::space(f.as_fd()) {
                    Ok((free, total)) if total > 0 && free < total / 20 => checks.push(fail(
                        "space",
                        format!(
                            "{} free of {}",
                            crate::units::human_bytes(free),
                            crate::units::human_bytes(total)
                        ),
                        "free space before staging in",
                    )),
                    Ok((free, total)) => checks.push(pass(
                        "space",
                        format!(
                            "{} free of {}",
                            crate::units::human_bytes(free),
                            crate::units::human_bytes(total)
                        ),
                    )),
                    Err(e) => checks.push(fail("space", e.to_string(), "check the mount")),
                }
            }
        }
    }
    let nofile = crate::lustre::sys::raise_nofile_limit().unwrap_or(0);
    if nofile < 1024 {
        checks.push(fail(
            "open files",
            format!("soft and hard limit {nofile}"),
            "raise `ulimit -n` (hard) to at least 4096, or lower --concurrency",
        ));
    } else {
        checks.push(pass(
            "open files",
            format!("limit {nofile} after raising the soft limit"),
        ));
    }
    let hooks = [
        "/etc/slurm/slurm.conf",
        "/etc/slurm/prolog.d",
        "/etc/slurm/epilog.d",
    ]
    .iter()
    .filter(|p| Path::new(p).exists())
    .any(|p| hook_mentions_hopstage(Path::new(p)));
    if Path::new("/etc/slurm").exists() {
        if hooks {
            checks.push(pass("slurm", "a Slurm prolog/epilog calls hopstage".into()));
        } else {
            checks.push(pass(
                "slurm",
                "Slurm is configured; no prolog/epilog calls hopstage (staging is by hand or in job scripts)".into(),
            ));
        }
    } else {
        checks.push(pass("slurm", "no Slurm configuration on this node".into()));
    }
    checks
}

fn hook_mentions_hopstage(p: &Path) -> bool {
    if p.is_dir() {
        return std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| hook_mentions_hopstage(&e.path()))
            })
            .unwrap_or(false);
    }
    std::fs::read_to_string(p)
        .map(|t| t.contains("hopstage"))
        .unwrap_or(false)
}

/// Prints the checks; exit 0 when all pass, 1 otherwise.
pub fn finish(checks: &[Check], json: bool) -> ExitCode {
    if json {
        let v = serde_json::json!({"ok": checks.iter().all(|c| c.ok), "checks": checks});
        println!("{v}");
    } else {
        for c in checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            match &c.fix {
                Some(fix) => println!("{mark} {:<12} {} — fix: {fix}", c.name, c.detail),
                None => println!("{mark} {:<12} {}", c.name, c.detail),
            }
        }
    }
    if checks.iter().all(|c| c.ok) {
        ExitCode::Success
    } else {
        ExitCode::Partial
    }
}
