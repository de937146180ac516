//! Command-line definitions (clap derive). Validation only: nothing here
//! touches the network or the file system.

use clap::{Args, Parser, Subcommand};

use crate::filter::Overwrite;

/// Stage data between Azure Blob Storage and Lustre / POSIX file systems.
///
/// REMOTE is ALIAS:/path (an alias from the config file, or a container name
/// on the default account: home:/proj, log:/jobs) or a blob URL
/// https://ACCOUNT.blob.core.windows.net/CONTAINER/path[?SAS].
#[derive(Debug, Parser)]
#[command(name = "hopstage", version, about, max_term_width = 100)]
pub struct Opts {
    /// Storage account name (overrides the environment and the config file).
    #[arg(long, global = true, value_name = "NAME")]
    pub account: Option<String>,
    /// Blob service endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite.
    #[arg(long, global = true, value_name = "URL")]
    pub blob_endpoint: Option<String>,
    /// Credential mode: auto, key, sas, managed-identity, workload-identity, azure-cli, client-secret, anonymous.
    #[arg(long, global = true, value_name = "MODE")]
    pub auth: Option<String>,
    /// Abandon and retry a request when no byte arrives for SECS seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_timeout: u64,
    /// Also write JSON-lines logs (info level: files moved, retries, failures) to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<std::path::PathBuf>,
    /// More log output (repeat for more); HOPSTAGE_LOG=debug does the same.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every blob under REMOTE into LOCAL_DIR (or one blob to a file).
    ///
    /// Example: hopstage pull home:/proj /AMLFS/proj
    Pull {
        /// Source: ALIAS:/path or blob URL.
        #[arg(value_name = "REMOTE")]
        remote: String,
        /// Destination directory (or file path when REMOTE is one blob).
        #[arg(value_name = "LOCAL_DIR")]
        local: std::path::PathBuf,
        /// Transfer options.
        #[command(flatten)]
        common: TransferArgs,
        /// Lustre layout for new files: auto (size-tiered), inherit, mirror,
        /// count=N,size=S[,pool=P], or pfl:END/count=N[/size=S],...,eof/count=N.
        /// Ignored on other file systems.
        #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = crate::lustre::policy::parse)]
        stripe: crate::lustre::StripePolicy,
    },
    /// Upload a file or the contents of a directory tree to REMOTE.
    ///
    /// Example: hopstage push /AMLFS/proj/out home:/proj/out
    Push {
        /// Source file or directory.
        #[arg(value_name = "LOCAL_PATH")]
        local: std::path::PathBuf,
        /// Destination: ALIAS:/path or blob URL.
        #[arg(value_name = "REMOTE")]
        remote: String,
        /// Transfer options.
        #[command(flatten)]
        common: TransferArgs,
        /// Follow symbolic links instead of skipping them.
        #[arg(long)]
        follow_symlinks: bool,
        /// Do not write hdi_isfolder=true directory stubs.
        #[arg(long)]
        no_dir_stubs: bool,
        /// Create the destination container if it does not exist.
        #[arg(long)]
        create_container: bool,
    },
    /// Copy a local file or tree to a local directory (e.g. /AMLFS ⇄ /mnt/resource),
    /// with the same skip rules, summaries and Lustre layouts as pull.
    ///
    /// Example: hopstage copy /AMLFS/proj/input /mnt/resource/input
    Copy {
        /// Source file or directory.
        #[arg(value_name = "SRC")]
        src: std::path::PathBuf,
        /// Destination directory (or file path when SRC is a file).
        #[arg(value_name = "DST")]
        dst: std::path::PathBuf,
        /// Transfer options.
        #[command(flatten)]
        common: TransferArgs,
        /// Lustre layout for new files: auto, inherit, mirror (the source's layout
        /// when both sides are Lustre), count=N,size=S[,pool=P], or pfl:....
        #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = crate::lustre::policy::parse)]
        stripe: crate::lustre::StripePolicy,
        /// HSM-released source files (Lustre): restore (read them, which
        /// restores them), skip, or fail.
        #[arg(long, value_enum, default_value = "restore", value_name = "WHAT")]
        hsm: crate::engine::copy::Hsm,
        /// Copy what symbolic links point to instead of recreating the links.
        #[arg(long)]
        follow_symlinks: bool,
    },
    /// Compare a local tree and a blob prefix by size and content hash.
    ///
    /// Exit 0 when identical, 1 when anything differs. Example:
    /// hopstage verify /AMLFS/proj home:/proj
    Verify {
        /// One side: a local directory or a REMOTE.
        #[arg(value_name = "SRC")]
        src: String,
        /// The other side.
        #[arg(value_name = "DST")]
        dst: String,
        /// Transfer options (filters, --json, memory and concurrency bounds).
        #[command(flatten)]
        common: TransferArgs,
    },
    /// Print the Lustre layout of a file or directory (like lfs getstripe), or
    /// with --set give a directory its default layout (like lfs setstripe DIR).
    ///
    /// Example: hopstage layout /AMLFS/proj/big.h5
    Layout {
        /// The file or directory.
        #[arg(value_name = "PATH")]
        path: std::path::PathBuf,
        /// Set this default layout on the directory PATH: count=N,size=S[,pool=P]
        /// or pfl:END/count=N[/size=S],...,eof/count=N.
        #[arg(long, value_name = "LAYOUT", value_parser = crate::lustre::policy::parse)]
        set: Option<crate::lustre::StripePolicy>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Check configuration, credentials, the container, the clock, the
    /// destination file system and the Slurm hooks; print a fix for each failure.
    ///
    /// Example: hopstage doctor home:/ --dest /AMLFS
    Doctor {
        /// The container to check [default: home:/].
        #[arg(value_name = "REMOTE")]
        remote: Option<String>,
        /// A destination directory to check (Lustre, free space).
        #[arg(long, value_name = "DIR")]
        dest: Option<std::path::PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: hopstage completions bash > /etc/bash_completion.d/hopstage
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these definitions.
    #[command(hide = true)]
    Man,
    /// Provisioning around hopstage for an az-hop cluster (ARM plan, cluster-init script).
    ///
    /// Example: hopstage bootstrap plan --config bootstrap.toml
    #[command(subcommand)]
    Bootstrap(BootstrapCommand),
    /// Slurm integration: prolog/epilog hooks, burst buffer, directive checks.
    ///
    /// Example: hopstage slurm parse job.sh
    Slurm(SlurmOpts),
    /// List blobs: size, modified time, name (with -l also owner, group, mode).
    ///
    /// Example: hopstage ls -l -R home:/proj
    Ls {
        /// What to list: ALIAS:/path or blob URL.
        #[arg(value_name = "REMOTE")]
        remote: String,
        /// Long format: owner, group and permissions from the POSIX metadata.
        #[arg(short = 'l', long = "long")]
        long: bool,
        /// Recurse into sub-directories.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Options shared by pull and push.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// Print what would move, move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only items whose relative path (or name) matches GLOB; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip items whose relative path (or name) matches GLOB; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// When to replace an existing destination.
    #[arg(long, value_enum, default_value = "if-changed", value_name = "WHEN")]
    pub overwrite: Overwrite,
    /// With if-changed: compare content hashes instead of size and mtime.
    #[arg(long)]
    pub checksum: bool,
    /// Print one JSON summary object on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no per-file lines; errors are still printed.
    #[arg(short, long)]
    pub quiet: bool,
    /// Files in flight at once [default: 32].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: Option<u32>,
    /// Bound on transfer buffers in flight (blocks × block size) [default: 256MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub max_memory: Option<u64>,
    /// Block (range) size for uploads and ranged downloads, grown to keep ≤ 50,000 blocks [default: 8MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub block_size: Option<u64>,
    /// Succeed even when the source matches nothing.
    #[arg(long)]
    pub allow_empty: bool,
    /// Split the transfer across processes: I/N (this is rank I of N), auto
    /// (SLURM_PROCID of SLURM_STEP_NUM_TASKS inside a multi-task srun step), off.
    #[arg(long, value_name = "I/N", default_value = "auto")]
    pub shard: String,
    /// Names one sharded run (default: JOBID.STEPID under srun); ranks of one
    /// run must agree, a rerun needs a new one.
    #[arg(long, value_name = "TOKEN")]
    pub shard_run: Option<String>,
    /// Sharded pulls split files of at least SIZE across ranks [default: 256MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub shard_split: Option<u64>,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    let v = crate::units::parse_size(s)?;
    if v == 0 {
        return Err("size must be greater than zero".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Opts::command().debug_assert();
    }

    #[test]
    fn parses_pull_flags() {
        let o = Opts::try_parse_from([
            "hopstage",
            "pull",
            "home:/p",
            "/tmp/x",
            "--block-size",
            "16MiB",
            "--include",
            "*.dat",
            "--include",
            "*.h5",
            "--overwrite",
            "never",
            "--json",
        ])
        .unwrap();
        match o.command {
            Command::Pull { common, .. } => {
                assert_eq!(common.block_size, Some(16 << 20));
                assert_eq!(common.include.len(), 2);
                assert_eq!(common.overwrite, Overwrite::Never);
                assert!(common.json);
            }
            _ => panic!("not pull"),
        }
        assert!(
            Opts::try_parse_from(["hopstage", "pull", "a:/", "b", "--block-size", "0"]).is_err()
        );
        assert!(
            Opts::try_parse_from(["hopstage", "pull", "a:/", "b", "--concurrency", "0"]).is_err()
        );
    }
}

/// `hopstage slurm ...`.
#[derive(Debug, Args)]
pub struct SlurmOpts {
    /// The site config with the credential and the [slurm] rules.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// The hook or tool.
    #[command(subcommand)]
    pub command: SlurmCommand,
}

/// Slurm subcommands.
#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// Stage the job's pulls in (slurm.conf Prolog= or prolog.d; runs as root).
    Prolog,
    /// Stage the job's pushes out and file its logs (Epilog= or epilog.d).
    Epilog,
    /// Check a batch script's #HOPSTAGE directives against the site's rules.
    ///
    /// Example: hopstage slurm parse job.sh
    Parse {
        /// The batch script.
        #[arg(value_name = "SCRIPT")]
        script: Option<std::path::PathBuf>,
        /// A job comment to check as well ('hopstage: pull A B; push C D').
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// Expand %u / $SLURM_JOB_USER as this user (default: $USER).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Print (or write, with --write) the prolog/epilog wrappers, slurm.conf
    /// lines and burst-buffer files.
    Install {
        /// Write the files under --slurm-dir instead of printing them.
        #[arg(long)]
        write: bool,
        /// Slurm's configuration directory.
        #[arg(long, value_name = "DIR", default_value = "/etc/slurm")]
        slurm_dir: std::path::PathBuf,
    },
    /// Burst-buffer calls (from burst_buffer.lua).
    #[command(subcommand)]
    Bb(BbCommand),
    /// Internal: the staging worker a hook starts (request on stdin).
    #[command(hide = true)]
    Stage,
}

/// `hopstage slurm bb ...` (called by burst_buffer.lua on the controller).
#[derive(Debug, Subcommand)]
pub enum BbCommand {
    /// At submit: reject a job whose directives would fail.
    Validate {
        /// The job script.
        script: std::path::PathBuf,
        /// The submitting user's uid (Slurm 22.05 does not pass it; then
        /// `%u` is checked symbolically).
        uid: Option<String>,
    },
    /// While the job is pending: stage in.
    DataIn(BbJob),
    /// After the job: stage out and file the logs.
    DataOut(BbJob),
}

/// `hopstage bootstrap ...`.
#[derive(Debug, Subcommand)]
pub enum BootstrapCommand {
    /// Check bootstrap.toml and print the ordered ARM requests it needs.
    ///
    /// Example: hopstage bootstrap plan --config bootstrap.toml --json
    Plan {
        /// The declarative file (see docs/bootstrap.example.toml).
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// Print the requests as JSON.
        #[arg(long)]
        json: bool,
        /// Also read the live state through this Azure Resource Manager
        /// endpoint and say, per request, create / update / already correct.
        #[arg(long, value_name = "URL")]
        arm_endpoint: Option<String>,
        /// Output format: text, json, or terraform (azapi resources).
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json", "terraform"])]
        format: String,
    },
    /// Create or fix what the plan describes, in order (GET first; writes only
    /// what is missing or different; safe to interrupt and rerun).
    ///
    /// Example: hopstage bootstrap apply --config bootstrap.toml --auth azure-cli
    Apply {
        /// The file and the endpoint.
        #[command(flatten)]
        target: ArmTarget,
        /// Seconds to wait after creating role assignments (propagation).
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        role_wait: u64,
        /// Seconds between polls of long-running operations without Retry-After.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        poll: u64,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What exists, its state, and the AMLFS mount command.
    ///
    /// Example: hopstage bootstrap status --config bootstrap.toml
    Status {
        /// The file and the endpoint.
        #[command(flatten)]
        target: ArmTarget,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the 91-AMLFS.sh cluster-init script (Lustre client, /AMLFS,
    /// /BLOB with the node's managed identity, unmount hooks).
    ///
    /// Example: hopstage bootstrap cluster-init --mgs 10.1.0.4 --account azhopdata01 --client-id GUID -o 91-AMLFS.sh
    ClusterInit {
        /// The AMLFS MGS address (clientInfo.mgsAddress).
        #[arg(long, value_name = "IP")]
        mgs: std::net::Ipv4Addr,
        /// Mount point.
        #[arg(long, default_value = "/AMLFS", value_name = "DIR")]
        mount: String,
        /// Storage account to mount at /BLOB.
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Container to mount at /BLOB.
        #[arg(long, default_value = "home", value_name = "NAME")]
        container: String,
        /// Client id of the nodes' user-assigned managed identity (az-hop's
        /// compute_vm_identity); without it /BLOB is not mounted.
        #[arg(long, value_name = "GUID")]
        client_id: Option<String>,
        /// The account has no hierarchical namespace (blobfuse2 type block).
        #[arg(long)]
        flat: bool,
        /// Also install hopstage's Slurm prolog/epilog wrappers.
        #[arg(long)]
        slurm_hooks: bool,
        /// Write the script here (mode 0755) instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
}

/// A burst-buffer call's job.
#[derive(Debug, Args)]
pub struct BbJob {
    /// Job id.
    pub job_id: String,
    /// The job script.
    pub script: std::path::PathBuf,
}

/// What `bootstrap apply` and `status` act on.
#[derive(Debug, Args)]
pub struct ArmTarget {
    /// The declarative file.
    #[arg(long, value_name = "FILE")]
    pub config: std::path::PathBuf,
    /// Azure Resource Manager endpoint.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://management.azure.com"
    )]
    pub arm_endpoint: String,
}
