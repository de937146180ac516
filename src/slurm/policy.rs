//! The admin's rules for the Slurm hooks (`[slurm]` in
//! `/etc/hopstage/config.toml`) and the checks every directive must pass.
//!
//! Owns: allowed local roots, allowed remote prefixes, the log default, the
//! shared state directory, time budgets and the failure action. Invariants: a
//! directive is accepted only when its local path is absolute, free of `..`
//! and under an allowed root, and its remote is an `ALIAS:/path` (never a URL:
//! users never bring credentials) under an allowed prefix. Paths are checked
//! lexically here and again, resolved, by the job's user before any write
//! (see [`super::stage`]).

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::directives::Directive;

/// What a user-data error does to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnUserError {
    /// Cancel the job; the reason goes to its output file and AdminComment.
    #[default]
    Cancel,
    /// Requeue the job held; the reason goes to AdminComment.
    Hold,
}

/// `[slurm]` settings.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookConfig {
    /// Local roots directives may write to or read from.
    pub allowed_roots: Vec<PathBuf>,
    /// Remote prefixes (`ALIAS:/path`, `%u` = job user) directives may use.
    /// Empty: any configured alias.
    pub allowed_remotes: Vec<String>,
    /// Where job logs and summaries go unless the job says `#HOPSTAGE log`;
    /// `%u` expands to the job user, and `/JOBID/` is appended.
    pub log: String,
    /// Shared, root-owned directory for per-job markers (must be visible to
    /// every node of a job, e.g. on /AMLFS).
    pub state_dir: PathBuf,
    /// Seconds a non-leader node waits for the leader's stage-in marker.
    pub node_wait_secs: u64,
    /// Seconds the prolog may stage before it gives up and requeues the job
    /// (keep below the site's PrologTimeout). 0: no limit.
    pub stage_in_secs: u64,
    /// Seconds the epilog waits for stage-out before handing it to a
    /// background process.
    pub epilog_wait_secs: u64,
    /// What a user-data error does to the job.
    pub on_user_error: OnUserError,
    /// Transfers in flight per hook (lower than interactive defaults: a
    /// prolog shares the node with the job's start-up).
    pub concurrency: usize,
    /// Node prologs of a multi-node job split the stage-in between them
    /// (`hopstage pull --shard`, docs/scale.md) instead of the first node
    /// staging alone.
    pub shard_nodes: bool,
    /// With `shard_nodes`: files of at least this many bytes are split
    /// across the nodes.
    pub shard_split: u64,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            allowed_roots: vec![PathBuf::from("/AMLFS")],
            allowed_remotes: Vec::new(),
            log: "log:/jobs/%u".into(),
            state_dir: PathBuf::from("/AMLFS/.hopstage/jobs"),
            node_wait_secs: 1800,
            stage_in_secs: 0,
            epilog_wait_secs: 60,
            on_user_error: OnUserError::Cancel,
            concurrency: 8,
            shard_nodes: false,
            shard_split: crate::shard::assign::SPLIT_MIN,
        }
    }
}

impl HookConfig {
    /// Reads `[slurm]` from the config file's value (absent: defaults).
    pub fn from_value(v: Option<&toml::Value>) -> Result<HookConfig, String> {
        match v {
            None => Ok(HookConfig::default()),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| format!("[slurm]: {}", e.message())),
        }
    }

    /// Checks one directive against the rules. The message names the
    /// directive and what the user (or admin) can do.
    pub fn check(&self, d: &Directive, user: &str) -> Result<(), String> {
        match d {
            Directive::Pull { remote, local } => {
                self.check_remote(remote, user)?;
                self.check_local(local)
            }
            Directive::Push { local, remote } => {
                self.check_local(local)?;
                self.check_remote(remote, user)
            }
            Directive::Log { remote } => self.check_remote(remote, user),
        }
    }

    /// Lexical check of a local path.
    pub fn check_local(&self, p: &Path) -> Result<(), String> {
        if !p.is_absolute() {
            return Err(format!(
                "'{}' is not an absolute path: write the full path, e.g. /AMLFS/$SLURM_JOB_USER/...",
                p.display()
            ));
        }
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!(
                "'{}' contains '..': write the path without it",
                p.display()
            ));
        }
        if self.allowed_roots.iter().any(|r| p.starts_with(r)) {
            Ok(())
        } else {
            Err(format!(
                "'{}' is outside the directories this cluster stages to ({}): choose a path under one of them",
                p.display(),
                self.roots_text()
            ))
        }
    }

    /// The allowed roots, for messages.
    pub fn roots_text(&self) -> String {
        self.allowed_roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check_remote(&self, remote: &str, user: &str) -> Result<(), String> {
        if remote.contains("://") {
            let shown = remote.split('?').next().unwrap_or_default();
            return Err(format!(
                "'{shown}' is a URL: job directives take ALIAS:/path only (the node's identity is used, never a user's SAS)"
            ));
        }
        let spec = crate::remote::parse(remote).map_err(|e| format!("'{remote}': {e}"))?;
        let crate::remote::RemoteSpec::Alias { alias, path } = &spec else {
            return Err(format!("'{remote}' is not ALIAS:/path"));
        };
        if path.split('/').any(|s| s == "..") {
            return Err(format!(
                "'{remote}' contains '..': write the path without it"
            ));
        }
        if self.allowed_remotes.is_empty() {
            return Ok(());
        }
        let full = format!("{alias}:/{path}");
        let ok = self.allowed_remotes.iter().any(|prefix| {
            let prefix = prefix.replace("%u", user);
            let prefix = prefix.trim_end_matches('/');
            full == prefix
                || full.starts_with(&format!("{prefix}/"))
                || prefix.ends_with(":") && full.starts_with(prefix)
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "'{remote}' is outside the blob paths jobs may use ({}): ask your admin or use one of them",
                self.allowed_remotes.join(", ").replace("%u", user)
            ))
        }
    }

    /// The log prefix for a job: the job's `#HOPSTAGE log` or the site default.
    pub fn log_prefix(&self, directives: &[Directive], user: &str, job_id: &str) -> String {
        let base = directives
            .iter()
            .rev()
            .find_map(|d| match d {
                Directive::Log { remote } => Some(remote.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.log.replace("%u", user));
        format!("{}/{job_id}", base.trim_end_matches('/'))
    }
}

/// Lexically normalises an absolute path (`/a/./b//c` → `/a/b/c`).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(remote: &str, local: &str) -> Directive {
        Directive::Pull {
            remote: remote.into(),
            local: local.into(),
        }
    }

    #[test]
    fn local_rules() {
        let c = HookConfig::default();
        assert!(c.check(&pull("home:/a", "/AMLFS/alice/a"), "alice").is_ok());
        let e = c.check(&pull("home:/a", "/tmp/a"), "alice").unwrap_err();
        assert!(e.contains("outside") && e.contains("/AMLFS"), "{e}");
        assert!(c
            .check(&pull("home:/a", "/AMLFS/../etc"), "alice")
            .unwrap_err()
            .contains(".."));
        assert!(c
            .check(&pull("home:/a", "AMLFS/a"), "alice")
            .unwrap_err()
            .contains("absolute"));
        // /AMLFSX is not under /AMLFS.
        assert!(c.check(&pull("home:/a", "/AMLFSX/a"), "alice").is_err());
    }

    #[test]
    fn remote_rules() {
        let c = HookConfig {
            allowed_remotes: vec!["home:/proj".into(), "home:/users/%u".into(), "log:".into()],
            ..HookConfig::default()
        };
        assert!(c.check(&pull("home:/proj/in", "/AMLFS/a"), "alice").is_ok());
        assert!(c.check(&pull("home:/proj", "/AMLFS/a"), "alice").is_ok());
        assert!(c
            .check(&pull("home:/users/alice/x", "/AMLFS/a"), "alice")
            .is_ok());
        assert!(c.check(&pull("log:/anything", "/AMLFS/a"), "alice").is_ok());
        assert!(c
            .check(&pull("home:/users/bob/x", "/AMLFS/a"), "alice")
            .is_err());
        assert!(c.check(&pull("home:/projx", "/AMLFS/a"), "alice").is_err());
        assert!(c
            .check(&pull("home:/proj/../users/bob", "/AMLFS/a"), "alice")
            .is_err());
        let e = c
            .check(
                &pull(
                    "https://acct.blob.core.windows.net/home/x?sig=SECRET",
                    "/AMLFS/a",
                ),
                "alice",
            )
            .unwrap_err();
        assert!(e.contains("URL") && !e.contains("SECRET"), "{e}");
    }

    #[test]
    fn config_and_log_prefix() {
        let v: toml::Value = toml::from_str(
            "allowed_roots = ['/scratch']\non_user_error = 'hold'\nlog = 'log:/slurm/%u/'",
        )
        .unwrap();
        let c = HookConfig::from_value(Some(&v)).unwrap();
        assert_eq!(c.on_user_error, OnUserError::Hold);
        assert_eq!(c.log_prefix(&[], "alice", "9"), "log:/slurm/alice/9");
        let d = [Directive::Log {
            remote: "home:/p/logs".into(),
        }];
        assert_eq!(c.log_prefix(&d, "alice", "9"), "home:/p/logs/9");
        let bad: toml::Value = toml::from_str("allowed_root = ['/x']").unwrap();
        assert!(HookConfig::from_value(Some(&bad))
            .unwrap_err()
            .contains("allowed_root"));
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize(Path::new("/a/./b//c/")), PathBuf::from("/a/b/c"));
    }
}
