//! A real single-node Slurm for hook tests: munged (own key and socket),
//! slurmctld and slurmd on free loopback ports with a temporary state
//! directory, hopstage's prolog/epilog (or burst buffer) installed by
//! `hopstage slurm install --write`, and a site config pointing at the test
//! Azurite. Jobs run as `nobody`.
//!
//! The daemons run in the foreground under a shell watchdog that kills exactly
//! their PIDs when this cluster is dropped or the test process exits. A missing
//! Slurm or munge fails with an install hint; there is no silent skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Azurite;

/// How the cluster stages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Prolog= and Epilog= call hopstage.
    Hooks,
    /// burst_buffer/lua calls hopstage.
    BurstBuffer,
    /// PrologSlurmctld= and EpilogSlurmctld= call hopstage (once per job, on
    /// the controller).
    Controller,
}

/// A running cluster.
pub struct Slurm {
    pub dir: tempfile::TempDir,
    /// The allowed root jobs stage under (stands in for /AMLFS).
    pub root: PathBuf,
    /// The job user's directory under `root`.
    pub home: PathBuf,
    pub conf: PathBuf,
    pub config: PathBuf,
    watchdog: Child,
    pids: Vec<u32>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub const NOBODY: u32 = 65534;

impl Slurm {
    /// Starts a cluster whose hopstage config stages `container` as alias
    /// `data` and `logs` as alias `log`, with extra `[slurm]` lines.
    pub fn start(azurite: &Azurite, data: &str, logs: &str, mode: Mode, extra: &str) -> Slurm {
        for bin in ["munged", "slurmctld", "slurmd", "sbatch", "scontrol"] {
            let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(bin).exists());
            assert!(
                found,
                "{bin} not found: install Debian's slurm-wlm and munge (scripts/deps.sh does this)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("hopstage-slurm")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path().to_path_buf();
        chmod(&d, 0o755);
        for sub in ["munge", "ctld", "spool", "log", "work", "etc", "AMLFS"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
            chmod(&d.join(sub), 0o755);
        }
        let root = d.join("AMLFS");
        let home = root.join("nobody");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).expect("chown");
        std::os::unix::fs::chown(d.join("work"), Some(NOBODY), Some(NOBODY)).expect("chown");
        let key = d.join("munge/munge.key");
        std::fs::write(&key, super::bytes(1024, 7)).expect("munge key");
        chmod(&key, 0o400);

        let config = d.join("etc/config.toml");
        std::fs::write(
            &config,
            format!(
                "account = \"devstoreaccount1\"\nblob_endpoint = \"{}\"\nkey = \"{}\"\n\n[alias.data]\ncontainer = \"{data}\"\n\n[alias.log]\ncontainer = \"{logs}\"\n\n[slurm]\nallowed_roots = [\"{}\"]\nstate_dir = \"{}/.hopstage/jobs\"\nlog = \"log:/jobs/%u\"\n{extra}\n",
                azurite.endpoint(),
                hopstage::config::AZURITE_KEY,
                root.display(),
                root.display(),
            ),
        )
        .expect("config");
        chmod(&config, 0o600);
        let out = Command::new(env!("CARGO_BIN_EXE_hopstage"))
            .args(["slurm", "--config"])
            .arg(&config)
            .args(["install", "--write", "--slurm-dir"])
            .arg(&d)
            .output()
            .expect("hopstage slurm install");
        assert!(out.status.success(), "install: {}", super::text(&out));

        let host = nix_hostname();
        let (ctld_port, d_port) = (free_port(), free_port());
        let hooks = match mode {
            Mode::Hooks => format!(
                "PrologFlags=Alloc\nProlog={p}/prolog.d/50-hopstage.sh\nEpilog={p}/epilog.d/50-hopstage.sh\n",
                p = d.display()
            ),
            Mode::BurstBuffer => "BurstBufferType=burst_buffer/lua\n".into(),
            Mode::Controller => format!(
                "PrologSlurmctld={p}/prolog.d/50-hopstage.sh\nEpilogSlurmctld={p}/epilog.d/50-hopstage.sh\n",
                p = d.display()
            ),
        };
        let conf = d.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=hopstage\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={ctld_port}\nSlurmdPort={d_port}\n\
AuthType=auth/munge\nAuthInfo=socket={p}/munge/sock\nCredType=cred/munge\n\
StateSaveLocation={p}/ctld\nSlurmdSpoolDir={p}/spool\nSlurmctldPidFile={p}/ctld.pid\nSlurmdPidFile={p}/d.pid\n\
SlurmctldLogFile={p}/log/ctld.log\nSlurmdLogFile={p}/log/d.log\nSlurmUser=root\n\
ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
MpiDefault=none\nReturnToService=2\nJobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n\
MinJobAge=600\nSchedulerParameters=bf_interval=1,sched_interval=1\n{hooks}\
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN\n\
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                p = d.display()
            ),
        )
        .expect("slurm.conf");

        let me = std::process::id();
        let p = d.display();
        let script = format!(
            "munged -F --force --socket={p}/munge/sock --key-file={p}/munge/munge.key --pid-file={p}/munge/pid --log-file={p}/munge/log --seed-file={p}/munge/seed >/dev/null 2>&1 & m=$!\n\
             while [ ! -S {p}/munge/sock ]; do sleep 0.1; done\n\
             export SLURM_CONF={p}/slurm.conf\n\
             slurmctld -D -i -f {p}/slurm.conf >/dev/null 2>&1 & c=$!\n\
             slurmd -D -N {host} -f {p}/slurm.conf >/dev/null 2>&1 & s=$!\n\
             echo $m $c $s\n\
             while kill -0 {me} 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 1; done\n\
             kill $s $c $m 2>/dev/null"
        );
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn slurm watchdog");
        let mut line = String::new();
        {
            use std::io::BufRead;
            let out = watchdog.stdout.take().expect("stdout");
            std::io::BufReader::new(out)
                .read_line(&mut line)
                .expect("pids");
        }
        let pids: Vec<u32> = line
            .split_whitespace()
            .map(|p| p.parse().expect("pid"))
            .collect();
        let cluster = Slurm {
            dir,
            root,
            home,
            conf,
            config,
            watchdog,
            pids,
        };
        // Ready when the node is idle.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = cluster.cmd("sinfo", &["-h", "-o", "%T"]);
            if out.trim() == "idle" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Slurm did not come up within 60 s (node state '{}'); logs in {}",
                out.trim(),
                cluster.dir.path().join("log").display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        cluster
    }

    /// Runs a Slurm client command as root; returns stdout (+stderr).
    pub fn cmd(&self, bin: &str, args: &[&str]) -> String {
        let out = Command::new(bin)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Submits `script` as nobody from the work directory; returns the job id
    /// or the error sbatch printed.
    pub fn sbatch(&self, name: &str, script: &str) -> Result<String, String> {
        let work = self.dir.path().join("work");
        let path = work.join(name);
        std::fs::write(&path, script).expect("job script");
        chmod(&path, 0o644);
        let out = Command::new("runuser")
            .args(["-u", "nobody", "--", "sbatch", "--parsable"])
            .arg(&path)
            .current_dir(&work)
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("sbatch");
        let text = super::text(&out);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(text)
        }
    }

    /// `scontrol show job -o ID`.
    pub fn show(&self, id: &str) -> String {
        self.cmd("scontrol", &["show", "job", "-o", id])
    }

    /// The job's state (COMPLETED, CANCELLED, PENDING, ...).
    pub fn state(&self, id: &str) -> String {
        let s = self.show(id);
        s.split_whitespace()
            .find_map(|w| w.strip_prefix("JobState="))
            .unwrap_or("UNKNOWN")
            .to_string()
    }

    /// Waits until the job reaches one of `states`; returns the state.
    pub fn wait(&self, id: &str, states: &[&str], secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.state(id);
            if states.contains(&s.as_str()) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {s} after {secs} s: {}\nslurmd log:\n{}",
                self.show(id),
                std::fs::read_to_string(self.dir.path().join("log/d.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Drained or down nodes with reasons (`sinfo -R`), empty when none.
    pub fn drained(&self) -> String {
        self.cmd("sinfo", &["-R", "-h"])
    }

    /// A file in the work directory (job output).
    pub fn work(&self, rel: &str) -> PathBuf {
        self.dir.path().join("work").join(rel)
    }

    /// hopstage with this cluster's site config (for checking blobs).
    pub fn hopstage(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hopstage"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AZURE_") || k.starts_with("HOPSTAGE_") {
                c.env_remove(k);
            }
        }
        c.env("HOPSTAGE_CONFIG", &self.config);
        c
    }

    /// Reads a blob as text through hopstage (`ALIAS:/path`).
    pub fn blob_text(&self, remote: &str) -> Option<String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dest = self.dir.path().join(format!("fetch-{n}"));
        let out = self
            .hopstage()
            .args(["pull", "--quiet", remote])
            .arg(&dest)
            .output()
            .expect("hopstage pull");
        if !out.status.success() {
            return None;
        }
        std::fs::read_to_string(&dest).ok()
    }
}

fn nix_hostname() -> String {
    nix::unistd::gethostname()
        .expect("hostname")
        .to_string_lossy()
        .into_owned()
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // slurmd, slurmctld, munged: exactly the PIDs this cluster started.
        for pid in self.pids.iter().rev() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        std::thread::sleep(Duration::from_millis(300));
    }
}
