//! Slurm integration: `#HOPSTAGE` directives in batch scripts staged by a
//! prolog/epilog pair or by the `burst_buffer/lua` plugin, plus `parse` (a
//! user's check) and `install` (an admin's set-up).
//!
//! Data flow: hook (root) → [`job`] facts from the hook environment →
//! [`directives`] parsed from the batch script / job comment → [`policy`]
//! checks → [`stage`] worker child (loads the credential, becomes the job's
//! user via [`identity`], runs the engine) → outcome JSON → [`hooks`] turns it
//! into exit 0, a cancelled/held job with a reason, or exit 1 (node fault).

pub mod directives;
pub mod hooks;
pub mod identity;
pub mod job;
pub mod policy;
pub mod stage;

use std::path::{Path, PathBuf};

use crate::cli::{SlurmCommand, SlurmOpts};

/// The burst-buffer script, with `@HOPSTAGE@` and `@CONFIG@` to fill in.
const BURST_BUFFER_LUA: &str = include_str!("../../contrib/slurm/burst_buffer.lua");

/// Runs one `hopstage slurm ...` command and returns the process exit code.
pub fn run(opts: SlurmOpts) -> i32 {
    let config = opts.config.clone();
    match opts.command {
        SlurmCommand::Prolog => hooks::prolog(config),
        SlurmCommand::Epilog => hooks::epilog(config),
        SlurmCommand::Stage => stage::main(),
        SlurmCommand::Parse {
            script,
            comment,
            user,
        } => parse(config, script.as_deref(), comment.as_deref(), user),
        SlurmCommand::Install { write, slurm_dir } => install(config, write, &slurm_dir),
        SlurmCommand::Bb(bb) => match bb {
            crate::cli::BbCommand::Validate { script, uid } => {
                hooks::validate(config, &script, uid.as_deref())
            }
            crate::cli::BbCommand::DataIn(crate::cli::BbJob { job_id, script }) => {
                hooks::burst_buffer(config, stage::Phase::In, &job_id, &script)
            }
            crate::cli::BbCommand::DataOut(crate::cli::BbJob { job_id, script }) => {
                hooks::burst_buffer(config, stage::Phase::Out, &job_id, &script)
            }
        },
    }
}

/// `hopstage slurm parse SCRIPT`: shows what the hooks would do with a script.
fn parse(
    config: Option<PathBuf>,
    script: Option<&Path>,
    comment: Option<&str>,
    user: Option<String>,
) -> i32 {
    let user = user
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "USER".into());
    let vars = directives::Vars {
        job_id: "JOBID",
        user: &user,
    };
    let mut found = Vec::new();
    if let Some(path) = script {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("hopstage: {}: {e}", path.display());
                return 2;
            }
        };
        match directives::parse_script(&text, &vars) {
            Ok(d) => found.extend(d),
            Err(e) => {
                eprintln!("hopstage: {}: {e}", path.display());
                return 2;
            }
        }
    }
    if let Some(c) = comment {
        match directives::parse_comment(c, &vars) {
            Ok(d) => found.extend(d),
            Err(e) => {
                eprintln!("hopstage: {e}");
                return 2;
            }
        }
    }
    // The site's rules, when this user may read them; else the defaults.
    let path = config.unwrap_or_else(|| PathBuf::from("/etc/hopstage/config.toml"));
    let rules = crate::config::load_file(&path)
        .ok()
        .and_then(|f| policy::HookConfig::from_value(f.slurm.as_ref()).ok());
    let note = if rules.is_some() {
        ""
    } else {
        " (site rules unreadable: default rules)"
    };
    let rules = rules.unwrap_or_default();
    let mut bad = 0;
    for d in &found {
        let verdict = match rules.check(d, &user) {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                bad += 1;
                e
            }
        };
        let what = match d {
            directives::Directive::Pull { remote, local } => {
                format!("before the job: pull {remote} -> {}", local.display())
            }
            directives::Directive::Push { local, remote } => {
                format!("after the job:  push {} -> {remote}", local.display())
            }
            directives::Directive::Log { remote } => format!("logs to:        {remote}/JOBID/"),
        };
        println!("{what}   [{verdict}]");
    }
    if found.is_empty() {
        println!("no #HOPSTAGE directives (they go in the comment block at the top, like #SBATCH)");
    } else if !found
        .iter()
        .any(|d| matches!(d, directives::Directive::Log { .. }))
    {
        println!(
            "logs to:        {}/JOBID/ (site default)",
            rules.log.replace("%u", &user).trim_end_matches('/')
        );
    }
    if bad > 0 {
        eprintln!("hopstage: {bad} directive(s) would fail the job{note}");
        2
    } else {
        0
    }
}

/// `hopstage slurm install`: prints (or writes) the Slurm configuration.
fn install(config: Option<PathBuf>, write: bool, slurm_dir: &Path) -> i32 {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/hopstage"));
    let config = config.unwrap_or_else(|| PathBuf::from("/etc/hopstage/config.toml"));
    let files = install_files(&exe, &config, slurm_dir);
    if !write {
        println!(
            "# Add to {d}/slurm.conf. If it already runs every script of a directory\n# (Prolog={d}/prolog.d/*, Epilog={d}/epilog.d/*), keep that and add only PrologFlags.",
            d = slurm_dir.display()
        );
        println!("PrologFlags=Alloc");
        println!("Prolog={}/prolog.d/50-hopstage.sh", slurm_dir.display());
        println!("Epilog={}/epilog.d/50-hopstage.sh", slurm_dir.display());
        println!("# optional, to stage while jobs are pending (see docs/slurm.md):");
        println!("#BurstBufferType=burst_buffer/lua");
        for (name, text, _) in &files {
            println!("\n# ---- {}/{name}", slurm_dir.display());
            print!("{text}");
        }
        return 0;
    }
    for (name, text, mode) in &files {
        let path = slurm_dir.join(name);
        let r = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
            });
        match r {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("hopstage: cannot write {}: {e}", path.display());
                return 2;
            }
        }
    }
    println!("now add PrologFlags=Alloc and the Prolog=/Epilog= lines (hopstage slurm install prints them) and run: scontrol reconfigure");
    0
}

/// The files `install` writes: name under the Slurm directory, text, mode.
pub fn install_files(exe: &Path, config: &Path, slurm_dir: &Path) -> Vec<(String, String, u32)> {
    // Hooks call scontrol; Slurm does not pass SLURM_CONF to every hook
    // (PrologSlurmctld), so point it at this directory's slurm.conf.
    let conf = slurm_dir.join("slurm.conf");
    let hook = |which: &str| {
        format!(
            "#!/bin/sh\n# hopstage {which}: stages the job's #HOPSTAGE directives (docs/slurm.md).\n# Exits non-zero only for node faults; user errors fail the job, not the node.\nexport SLURM_CONF=\"${{SLURM_CONF:-{}}}\"\nexec {} slurm --config {} {which}\n",
            conf.display(),
            exe.display(),
            config.display()
        )
    };
    vec![
        ("prolog.d/50-hopstage.sh".into(), hook("prolog"), 0o755),
        ("epilog.d/50-hopstage.sh".into(), hook("epilog"), 0o755),
        (
            "burst_buffer.lua".into(),
            BURST_BUFFER_LUA
                .replace("@HOPSTAGE@", &exe.display().to_string())
                .replace("@CONFIG@", &config.display().to_string()),
            0o644,
        ),
        (
            "burst_buffer.conf".into(),
            "# hopstage: #HOPSTAGE lines are the burst-buffer directives.\nDirective=HOPSTAGE\nStageInTimeout=86400\nStageOutTimeout=86400\n".into(),
            0o644,
        ),
    ]
}
