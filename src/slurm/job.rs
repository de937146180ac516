//! What hopstage knows about a Slurm job: read from the hook's `SLURM_*`
//! environment, or from `scontrol show job -o` where no such environment
//! exists (burst-buffer scripts), plus Slurm hostlist expansion and output-file
//! pattern expansion.
//!
//! Owns the job facts the hooks act on. Invariants: nothing here is taken from
//! the user's environment (prologs do not see it); a job without a numeric id
//! or uid is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One job, as the hooks see it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// `SLURM_JOB_ID`.
    pub id: String,
    /// `SLURM_JOB_USER`.
    pub user: String,
    /// `SLURM_JOB_UID`.
    pub uid: u32,
    /// `SLURM_JOB_GID`.
    pub gid: u32,
    /// `SLURM_JOB_NAME`, when known.
    pub name: String,
    /// `SLURM_JOB_WORK_DIR`.
    pub work_dir: Option<PathBuf>,
    /// `SLURM_JOB_STDOUT` (a pattern: `%j` etc. not yet expanded).
    pub stdout: Option<String>,
    /// `SLURM_JOB_STDERR` (a pattern).
    pub stderr: Option<String>,
    /// `SLURM_JOB_COMMENT`.
    pub comment: String,
    /// `SLURM_NODELIST`, expanded.
    pub nodes: Vec<String>,
    /// `SLURMD_NODENAME` (empty on the controller).
    pub this_node: String,
    /// `SLURM_SCRIPT_CONTEXT` (`prolog_slurmd`, `prolog_slurmctld`, ...).
    pub context: String,
    /// `SLURM_JOB_RESTART_COUNT`.
    pub restarts: u32,
}

impl Job {
    /// Reads the job from a hook's environment.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Job, String> {
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        let id = get("SLURM_JOB_ID");
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(
                "SLURM_JOB_ID is missing or not a number: run this from a Slurm prolog/epilog"
                    .into(),
            );
        }
        let num = |k: &str| -> Result<u32, String> {
            get(k)
                .parse()
                .map_err(|_| format!("{k} is missing or not a number in the hook environment"))
        };
        // Node prologs see SLURM_NODELIST; PrologSlurmctld sees SLURM_JOB_NODELIST.
        let list = Some(get("SLURM_NODELIST"))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| get("SLURM_JOB_NODELIST"));
        let nodes = expand_hostlist(&list)?;
        let opt = |k: &str| Some(get(k)).filter(|v| !v.is_empty());
        Ok(Job {
            user: get("SLURM_JOB_USER"),
            uid: num("SLURM_JOB_UID")?,
            gid: num("SLURM_JOB_GID")?,
            name: get("SLURM_JOB_NAME"),
            work_dir: opt("SLURM_JOB_WORK_DIR").map(PathBuf::from),
            stdout: opt("SLURM_JOB_STDOUT"),
            stderr: opt("SLURM_JOB_STDERR"),
            comment: get("SLURM_JOB_COMMENT"),
            nodes,
            this_node: get("SLURMD_NODENAME"),
            context: get("SLURM_SCRIPT_CONTEXT"),
            restarts: get("SLURM_JOB_RESTART_COUNT").parse().unwrap_or(0),
            id,
        })
    }

    /// Reads the job from one line of `scontrol show job -o ID`.
    pub fn from_scontrol(line: &str) -> Result<Job, String> {
        let fields = scontrol_fields(line);
        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
        let id = get("JobId");
        if id.is_empty() {
            return Err("scontrol show job printed no JobId".into());
        }
        // UserId=alice(1000) GroupId=alice(1000)
        let split = |v: String| -> Result<(String, u32), String> {
            let (name, rest) = v.split_once('(').ok_or(format!("cannot read '{v}'"))?;
            let n = rest
                .trim_end_matches(')')
                .parse()
                .map_err(|_| format!("cannot read '{v}'"))?;
            Ok((name.to_string(), n))
        };
        let (user, uid) = split(get("UserId"))?;
        let (_, gid) = split(get("GroupId"))?;
        let opt = |k: &str| Some(get(k)).filter(|v| !v.is_empty() && v != "(null)");
        Ok(Job {
            user,
            uid,
            gid,
            name: get("JobName"),
            work_dir: opt("WorkDir").map(PathBuf::from),
            stdout: opt("StdOut"),
            stderr: opt("StdErr"),
            comment: opt("Comment").unwrap_or_default(),
            nodes: opt("NodeList")
                .map(|n| expand_hostlist(&n))
                .transpose()?
                .unwrap_or_default(),
            this_node: String::new(),
            context: "burst_buffer".into(),
            restarts: get("Restarts").parse().unwrap_or(0),
            id,
        })
    }

    /// True when this process should do the job's staging: on the controller,
    /// in a burst-buffer script, or on the first node of the allocation.
    pub fn is_leader(&self) -> bool {
        self.this_node.is_empty()
            || self.nodes.is_empty()
            || self.nodes.first().is_some_and(|n| *n == self.this_node)
    }

    /// Expands a Slurm output pattern (`%j`, `%u`, `%x`, `%N`, `%A`, `%a`, `%%`)
    /// and makes it absolute against the work directory. `None` when the
    /// pattern uses something hopstage cannot know (`%t`, `%s`, ...).
    pub fn output_path(&self, pattern: &str) -> Option<PathBuf> {
        let mut out = String::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            // Slurm allows a zero-padding width: %5j.
            let mut width = String::new();
            let mut spec = chars.next()?;
            while spec.is_ascii_digit() {
                width.push(spec);
                spec = chars.next()?;
            }
            let value = match spec {
                'j' | 'A' => self.id.clone(),
                'u' => self.user.clone(),
                'x' => self.name.clone(),
                'N' => self.nodes.first().cloned().unwrap_or_default(),
                'a' => "4294967294".into(),
                '%' => "%".into(),
                _ => return None,
            };
            let w: usize = width.parse().unwrap_or(0);
            out.push_str(&format!("{value:0>w$}"));
        }
        let p = PathBuf::from(out);
        if p.is_absolute() {
            Some(p)
        } else {
            self.work_dir.as_ref().map(|w| w.join(p))
        }
    }
}

/// Splits `scontrol show job -o` output into `Key=Value` fields. Values may
/// hold spaces only for the last keys (`Command=`, `Comment=`), which Slurm
/// prints unquoted; a word without `=` continues the previous value.
fn scontrol_fields(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in line.split_whitespace() {
        match word.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '/') =>
            {
                out.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            _ => {
                if let Some(k) = &last {
                    if let Some(v) = out.get_mut(k) {
                        v.push(' ');
                        v.push_str(word);
                    }
                }
            }
        }
    }
    out
}

/// Expands a Slurm hostlist (`node[01-03,7],gpu1`) into host names, in order.
pub fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let bytes = list.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b',' if depth == 0 => {
                expand_one(&list[start..i], &mut out)?;
                start = i + 1;
            }
            _ => {}
        }
    }
    expand_one(&list[start..], &mut out)?;
    Ok(out)
}

fn expand_one(item: &str, out: &mut Vec<String>) -> Result<(), String> {
    let item = item.trim();
    if item.is_empty() {
        return Ok(());
    }
    let bad = || format!("cannot read the host list '{item}'");
    let Some(open) = item.find('[') else {
        out.push(item.to_string());
        return Ok(());
    };
    let close = item[open..].find(']').map(|c| c + open).ok_or_else(bad)?;
    let (prefix, ranges, suffix) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    let mut tails = Vec::new();
    expand_one(suffix, &mut tails)?;
    if tails.is_empty() {
        tails.push(String::new());
    }
    for range in ranges.split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let width = lo.len();
        let a: u64 = lo.parse().map_err(|_| bad())?;
        let b: u64 = hi.parse().map_err(|_| bad())?;
        if b < a || b - a > 100_000 {
            return Err(bad());
        }
        for n in a..=b {
            for t in &tails {
                out.push(format!("{prefix}{n:0width$}{t}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostlists() {
        assert_eq!(expand_hostlist("vm").unwrap(), vec!["vm"]);
        assert_eq!(
            expand_hostlist("hpc[008-010,12],gpu1").unwrap(),
            vec!["hpc008", "hpc009", "hpc010", "hpc12", "gpu1"]
        );
        assert_eq!(
            expand_hostlist("r[1-2]n[1-2]").unwrap(),
            vec!["r1n1", "r1n2", "r2n1", "r2n2"]
        );
        assert!(expand_hostlist("a[3-1]").is_err());
        assert!(expand_hostlist("a[1-").is_err());
        assert!(expand_hostlist("").unwrap().is_empty());
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn from_env_and_leader() {
        let mut e = env(&[
            ("SLURM_JOB_ID", "7"),
            ("SLURM_JOB_USER", "alice"),
            ("SLURM_JOB_UID", "1000"),
            ("SLURM_JOB_GID", "100"),
            ("SLURM_NODELIST", "hpc[1-3]"),
            ("SLURMD_NODENAME", "hpc1"),
            ("SLURM_JOB_WORK_DIR", "/home/alice"),
            ("SLURM_JOB_STDOUT", "out-%j-%u.txt"),
        ]);
        let j = Job::from_env(&e).unwrap();
        assert!(j.is_leader());
        assert_eq!(
            j.output_path(j.stdout.as_deref().unwrap()).unwrap(),
            PathBuf::from("/home/alice/out-7-alice.txt")
        );
        assert_eq!(j.output_path("/x/%5j.%t"), None);
        assert_eq!(
            j.output_path("/x/%5j.log").unwrap(),
            PathBuf::from("/x/00007.log")
        );
        e.insert("SLURMD_NODENAME".into(), "hpc2".into());
        assert!(!Job::from_env(&e).unwrap().is_leader());
        e.insert("SLURM_JOB_ID".into(), "7; rm".into());
        assert!(Job::from_env(&e).is_err());
        e.insert("SLURM_JOB_ID".into(), "7".into());
        e.remove("SLURM_JOB_UID");
        assert!(Job::from_env(&e).unwrap_err().contains("SLURM_JOB_UID"));
    }

    #[test]
    fn from_scontrol_line() {
        let line = "JobId=12 JobName=my job UserId=alice(1000) GroupId=users(100) MCS_label=N/A Restarts=1 NodeList=(null) WorkDir=/home/alice StdErr=/home/alice/slurm-12.out StdOut=/home/alice/slurm-12.out Comment=hopstage: pull a b";
        let j = Job::from_scontrol(line).unwrap();
        assert_eq!(j.id, "12");
        assert_eq!(j.name, "my job");
        assert_eq!((j.uid, j.gid), (1000, 100));
        assert_eq!(j.restarts, 1);
        assert!(j.nodes.is_empty());
        assert_eq!(j.comment, "hopstage: pull a b");
        assert!(j.is_leader());
    }
}
