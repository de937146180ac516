//! Slurm hooks under a real single-node Slurm (munged + slurmctld + slurmd
//! started by `util::slurm`), jobs submitted as `nobody` with `#HOPSTAGE`
//! directives, data in the test Azurite.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::slurm::{Mode, Slurm, NOBODY};
use crate::util::{text, write, Azurite, TestEnv};

fn containers(env: &TestEnv) -> (String, String) {
    let logs = format!("{}-log", env.container);
    env.azurite.create_container(&logs);
    (env.container.clone(), logs)
}

/// Waits for a blob to appear (the epilog runs after the job is COMPLETED).
fn wait_blob(s: &Slurm, remote: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = s.blob_text(remote) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{remote} did not appear within {secs} s; slurmd log:\n{}",
            std::fs::read_to_string(s.dir.path().join("log/d.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn summary(s: &Slurm, remote: &str) -> serde_json::Value {
    serde_json::from_str(&wait_blob(s, remote, 60)).expect("summary JSON")
}

fn seed_input(env: &TestEnv) {
    write(&env.path("in"), "a.txt", b"alpha input\n");
    write(
        &env.path("in"),
        "sub/b.bin",
        &crate::util::bytes(3 << 20, 5),
    );
    env.run_json(
        &[
            "push",
            env.path("in").to_str().unwrap(),
            &env.remote("proj/input"),
        ],
        0,
    );
}

/// A cluster staging from a seeded container; also the allowed root and
/// the work directory as strings.
fn cluster(mode: Mode, extra: &str) -> (TestEnv, Slurm, String, String) {
    let env = TestEnv::new();
    let (data, logs) = containers(&env);
    seed_input(&env);
    let s = Slurm::start(Azurite::shared(), &data, &logs, mode, extra);
    let (root, work) = (
        s.root.display().to_string(),
        s.work("").display().to_string(),
    );
    (env, s, root, work)
}

#[test]
fn slurm_hooks_stage_jobs_as_their_user_and_fail_jobs_not_nodes() {
    // epilog_wait_secs = 0: every stage-out is handed to a background worker
    // at once, so the outputs below prove it outlives the epilog.
    let (_env, s, root, work) = cluster(Mode::Hooks, "epilog_wait_secs = 0");

    // 1. Data in before the body, owned by the job user; outputs and logs out after.
    let id = s
        .sbatch(
            "good.sh",
            &format!(
                "#!/bin/sh\n#SBATCH -o {work}/good-%j.out\n\
                 #HOPSTAGE pull data:/proj/input {root}/$SLURM_JOB_USER/in-%j\n\
                 #HOPSTAGE push {root}/%u/out-%j data:/proj/out/%j\n\
                 cat {root}/nobody/in-$SLURM_JOB_ID/a.txt\n\
                 mkdir {root}/nobody/out-$SLURM_JOB_ID && echo result-$SLURM_JOB_ID > {root}/nobody/out-$SLURM_JOB_ID/r.txt\n"
            ),
        )
        .expect("submit");
    assert_eq!(
        s.wait(&id, &["COMPLETED", "FAILED", "CANCELLED"], 120),
        "COMPLETED"
    );
    let out = std::fs::read_to_string(s.work(&format!("good-{id}.out"))).unwrap();
    assert!(
        out.contains("alpha input"),
        "the job did not see its input: {out}"
    );
    let staged = s.home.join(format!("in-{id}"));
    for f in ["a.txt", "sub/b.bin", "sub"] {
        let m = std::fs::metadata(staged.join(f)).unwrap();
        assert_eq!(m.uid(), NOBODY, "{f} is not owned by the job user");
    }
    assert_eq!(
        std::fs::read(staged.join("sub/b.bin")).unwrap(),
        crate::util::bytes(3 << 20, 5)
    );
    assert_eq!(
        wait_blob(&s, &format!("data:/proj/out/{id}/r.txt"), 60),
        format!("result-{id}\n")
    );
    let sin = summary(&s, &format!("log:/jobs/nobody/{id}/stage-in.json"));
    assert_eq!(sin["status"], "ok", "{sin}");
    assert_eq!(
        sin["transfers"][0]["summary"]["files_transferred"], 2,
        "{sin}"
    );
    let sout = summary(&s, &format!("log:/jobs/nobody/{id}/stage-out.json"));
    assert_eq!(sout["status"], "ok", "{sout}");
    let filed = wait_blob(&s, &format!("log:/jobs/nobody/{id}/good-{id}.out"), 30);
    assert!(
        filed.contains("alpha input"),
        "job output not filed: {filed}"
    );

    // 2. A destination outside the allowed root: the job is cancelled with a reason.
    let outside = s.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let bad = s
        .sbatch(
            "outside.sh",
            &format!(
                "#!/bin/sh\n#SBATCH -o {work}/outside-%j.out\n#HOPSTAGE pull data:/proj/input {}/x\necho body ran\n",
                outside.display()
            ),
        )
        .unwrap();
    // 3. A missing blob.
    let missing = s
        .sbatch(
            "missing.sh",
            &format!("#!/bin/sh\n#SBATCH -o {work}/missing-%j.out\n#HOPSTAGE pull data:/proj/nope {root}/nobody/nope\necho body ran\n"),
        )
        .unwrap();
    // 4. A symbolic link the user planted, pointing out of the root.
    let link = s.home.join("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
    let planted = s
        .sbatch(
            "planted.sh",
            &format!("#!/bin/sh\n#SBATCH -o {work}/planted-%j.out\n#HOPSTAGE pull data:/proj/input {root}/nobody/link/x\necho body ran\n"),
        )
        .unwrap();
    for (job, name, why) in [
        (&bad, "outside", "outside the directories"),
        (&missing, "missing", "nothing found under 'proj/nope'"),
        (&planted, "planted", "resolves to"),
    ] {
        assert_eq!(
            s.wait(job, &["CANCELLED", "COMPLETED", "FAILED"], 120),
            "CANCELLED"
        );
        let show = s.show(job);
        assert!(
            show.contains("AdminComment=hopstage: ") && show.contains(why),
            "{name}: {show}"
        );
        let out = std::fs::read_to_string(s.work(&format!("{name}-{job}.out"))).unwrap_or_default();
        assert!(
            out.contains("stage-in failed") && out.contains(why),
            "{name}: {out}"
        );
        assert!(!out.contains("body ran"), "{name}: the body ran");
        let sin = summary(&s, &format!("log:/jobs/nobody/{job}/stage-in.json"));
        assert_eq!(sin["status"], "user_error", "{sin}");
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written through the planted link"
    );
    assert_eq!(s.drained().trim(), "", "a user error drained the node");
    assert_eq!(s.cmd("sinfo", &["-h", "-o", "%T"]).trim(), "idle");

    // 5. A requeued job resumes its staging: nothing moves twice.
    let rq = s
        .sbatch(
            "requeue.sh",
            &format!(
                "#!/bin/sh\n#SBATCH -o {work}/requeue-%j.out\n#SBATCH --open-mode=append\n\
                 #HOPSTAGE pull data:/proj/input {root}/nobody/rq\n\
                 echo run $SLURM_RESTART_COUNT; [ \"$SLURM_RESTART_COUNT\" = 1 ] || sleep 30\n"
            ),
        )
        .unwrap();
    s.wait(&rq, &["RUNNING"], 60);
    let first = summary(&s, &format!("log:/jobs/nobody/{rq}/stage-in.json"));
    assert_eq!(
        first["transfers"][0]["summary"]["files_transferred"], 2,
        "{first}"
    );
    let out = s.cmd("scontrol", &["requeue", &rq]);
    assert!(out.trim().is_empty(), "requeue: {out}");
    assert_eq!(
        s.wait(&rq, &["COMPLETED", "FAILED", "CANCELLED"], 180),
        "COMPLETED"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        let v = summary(&s, &format!("log:/jobs/nobody/{rq}/stage-in.json"));
        if v["transfers"][0]["summary"]["files_skipped"] != 0 {
            break v;
        }
        assert!(Instant::now() < deadline, "second stage-in not filed: {v}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        second["transfers"][0]["summary"]["files_transferred"], 0,
        "{second}"
    );
    assert!(
        second["transfers"][0]["summary"]["files_skipped"].as_u64() >= Some(2),
        "{second}"
    );
    assert_eq!(s.drained().trim(), "");
}

#[test]
fn slurm_burst_buffer_stages_while_the_job_is_pending() {
    let (_env, s, root, work) = cluster(Mode::BurstBuffer, "");

    // Refused at submit: sbatch itself prints hopstage's reason.
    let refused = s
        .sbatch(
            "refused.sh",
            "#!/bin/sh\n#HOPSTAGE pull data:/proj/input /etc/hopstage-test\necho body\n",
        )
        .unwrap_err();
    assert!(refused.contains("outside the directories"), "{refused}");

    let id = s
        .sbatch(
            "bb.sh",
            &format!(
                "#!/bin/sh\n#SBATCH -o {work}/bb-%j.out\n#HOPSTAGE pull data:/proj/input {root}/nobody/bb-%j\n\
                 #HOPSTAGE push {root}/nobody/bb-out-%j data:/proj/bb-out/%j\n\
                 cat {root}/nobody/bb-$SLURM_JOB_ID/a.txt; mkdir {root}/nobody/bb-out-$SLURM_JOB_ID; echo bb > {root}/nobody/bb-out-$SLURM_JOB_ID/o.txt\n"
            ),
        )
        .unwrap();
    assert_eq!(
        s.wait(&id, &["COMPLETED", "FAILED", "CANCELLED"], 120),
        "COMPLETED"
    );
    let out = std::fs::read_to_string(s.work(&format!("bb-{id}.out"))).unwrap();
    assert!(out.contains("alpha input"), "{out}");
    assert_eq!(
        std::fs::metadata(s.home.join(format!("bb-{id}/a.txt")))
            .unwrap()
            .uid(),
        NOBODY
    );
    assert_eq!(
        wait_blob(&s, &format!("data:/proj/bb-out/{id}/o.txt"), 90),
        "bb\n"
    );
    let sin = summary(&s, &format!("log:/jobs/nobody/{id}/stage-in.json"));
    assert_eq!(sin["status"], "ok");
    // The copy finished before the job started: it ran while the job was
    // pending (this cluster has no prolog; only the burst buffer stages).
    let shown = Command::new("scontrol")
        .args(["show", "job", "-o", &id])
        .env("SLURM_CONF", &s.conf)
        .env("SLURM_TIME_FORMAT", "%s")
        .output()
        .unwrap();
    let start: u64 = String::from_utf8_lossy(&shown.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("StartTime="))
        .and_then(|t| t.parse().ok())
        .expect("StartTime");
    let staged = sin["finished_unix"].as_u64().unwrap();
    assert!(
        staged <= start,
        "staged at {staged}, job started at {start}"
    );

    // A missing blob holds the job with hopstage's reason.
    let held = s
        .sbatch(
            "held.sh",
            &format!("#!/bin/sh\n#HOPSTAGE pull data:/proj/nope {root}/nobody/nope\necho body\n"),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let show = s.show(&held);
        if show.contains("nothing found under 'proj/nope'") {
            break;
        }
        assert!(Instant::now() < deadline, "no reason shown: {show}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(s.state(&held), "PENDING");
    s.cmd("scancel", &[&held]);
    assert_eq!(s.drained().trim(), "");
}

#[test]
fn slurm_controller_prolog_stages_once_per_job() {
    let (_env, s, root, work) = cluster(Mode::Controller, "");
    let id = s
        .sbatch(
            "ctld.sh",
            &format!(
                "#!/bin/sh\n#SBATCH -o {work}/ctld-%j.out\n#HOPSTAGE pull data:/proj/input {root}/nobody/c-%j\n\
                 #HOPSTAGE push {root}/nobody/c-%j data:/proj/ctld-out/%j\ncat {root}/nobody/c-$SLURM_JOB_ID/a.txt\n"
            ),
        )
        .unwrap();
    assert_eq!(
        s.wait(&id, &["COMPLETED", "FAILED", "CANCELLED"], 120),
        "COMPLETED"
    );
    let out = std::fs::read_to_string(s.work(&format!("ctld-{id}.out"))).unwrap();
    assert!(out.contains("alpha input"), "{out}");
    assert_eq!(
        wait_blob(&s, &format!("data:/proj/ctld-out/{id}/a.txt"), 60),
        "alpha input\n"
    );
    let bad = s
        .sbatch(
            "ctld-bad.sh",
            &format!("#!/bin/sh\n#SBATCH -o {work}/ctld-bad-%j.out\n#HOPSTAGE pull data:/proj/nope {root}/nobody/n\necho body ran\n"),
        )
        .unwrap();
    assert_eq!(
        s.wait(&bad, &["CANCELLED", "COMPLETED", "FAILED"], 120),
        "CANCELLED"
    );
    assert!(s.show(&bad).contains("nothing found"), "{}", s.show(&bad));
    assert_eq!(s.drained().trim(), "");
}

/// Runs `hopstage slurm prolog` directly with a hook environment (no daemons):
/// node roles and node faults.
fn prolog_env(config: &std::path::Path, extra: &[(&str, &str)]) -> Command {
    // No controller here: Slurm's client commands answer "unreachable" at once.
    let stubs = std::env::temp_dir().join(format!("hopstage-noslurm-{}", std::process::id()));
    std::fs::create_dir_all(&stubs).unwrap();
    for cmd in ["scontrol", "scancel"] {
        let p = stubs.join(cmd);
        std::fs::write(&p, "#!/bin/sh\necho \"slurm_load_jobs error: Unable to contact slurm controller\" >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_hopstage"));
    c.env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stubs.display()),
        )
        .env("SLURM_CONF", "/nonexistent/slurm.conf")
        .env("SLURM_JOB_ID", "77")
        .env("SLURM_JOB_USER", "nobody")
        .env("SLURM_JOB_UID", NOBODY.to_string())
        .env("SLURM_JOB_GID", NOBODY.to_string())
        .env("SLURM_SCRIPT_CONTEXT", "prolog_slurmd")
        .args(["slurm", "--config"])
        .arg(config)
        .arg("prolog");
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

#[test]
fn slurm_prolog_roles_and_node_faults_without_daemons() {
    let env = TestEnv::new();
    let (data, logs) = containers(&env);
    seed_input(&env);
    let root = env.path("root");
    std::fs::create_dir_all(&root).unwrap();
    // The job user must reach the root through the test's directory.
    std::fs::set_permissions(
        env.path(""),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = env.path("config.toml");
    let write_config_at = |roots: &str, wait: u64, endpoint: &str, extra: &str| {
        std::fs::write(
            &config,
            format!(
                "account = \"devstoreaccount1\"\nblob_endpoint = \"{endpoint}\"\nkey = \"{}\"\n[alias.data]\ncontainer = \"{data}\"\n[alias.log]\ncontainer = \"{logs}\"\n[slurm]\nallowed_roots = [{roots}]\nstate_dir = \"{}/state\"\nnode_wait_secs = {wait}\n{extra}\n",
                hopstage::config::AZURITE_KEY,
                env.path("").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let write_config =
        |roots: &str, wait: u64| write_config_at(roots, wait, &env.azurite.endpoint(), "");
    let comment = format!("hopstage: pull data:/proj/input {}/in", root.display());

    // A job without directives: nothing to do, fast.
    write_config(&format!("\"{}\"", root.display()), 2);
    let out = prolog_env(
        &config,
        &[("SLURM_NODELIST", "n1"), ("SLURMD_NODENAME", "n1")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A non-leader waits for the leader's marker, then lets the job start.
    let marker = env.path("state/77/stage-in.0.json");
    let started = Instant::now();
    let mut follower = prolog_env(
        &config,
        &[
            ("SLURM_NODELIST", "n[1-2]"),
            ("SLURMD_NODENAME", "n2"),
            ("SLURM_JOB_COMMENT", &comment),
        ],
    )
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "the follower did not wait"
    );
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, "{}").unwrap();
    assert!(follower.wait().unwrap().success());
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(!root.join("in").exists(), "a follower staged");
    std::fs::remove_dir_all(env.path("state")).unwrap();

    // The leader stages (as nobody) and records the marker.
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = prolog_env(
        &config,
        &[
            ("SLURM_NODELIST", "n[1-2]"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_JOB_COMMENT", &comment),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::metadata(root.join("in/a.txt")).unwrap().uid(),
        NOBODY
    );
    assert!(marker.exists());

    // Past stage_in_secs the worker is stopped and the job requeued with a
    // reason; the next prolog resumes (here: blob reads slowed to 3 s each).
    std::fs::remove_dir_all(root.join("in")).unwrap();
    std::fs::remove_dir_all(env.path("state")).unwrap();
    let proxy = crate::util::faults::FaultProxy::start(env.azurite.port, |_, line| {
        if line.starts_with("GET") && !line.contains("comp=list") {
            crate::util::faults::Action::Delay(3000)
        } else {
            crate::util::faults::Action::Forward
        }
    });
    write_config_at(
        &format!("\"{}\"", root.display()),
        2,
        &format!("http://127.0.0.1:{}/devstoreaccount1", proxy.port),
        "stage_in_secs = 1",
    );
    let leader = [
        ("SLURM_NODELIST", "n1"),
        ("SLURMD_NODENAME", "n1"),
        ("SLURM_JOB_COMMENT", comment.as_str()),
    ];
    let t = Instant::now();
    let out = prolog_env(&config, &leader).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("did not finish within 1 s") && text(&out).contains("requeued"),
        "{}",
        text(&out)
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the budget was not enforced"
    );
    assert!(
        !marker.exists(),
        "a timed-out stage-in left a success marker"
    );
    assert!(!root.join("in/a.txt").exists());
    write_config(&format!("\"{}\"", root.display()), 2);
    let out = prolog_env(&config, &leader).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(root.join("in/a.txt").exists() && marker.exists());

    // The allowed root is missing on this node (file system not mounted): a
    // node fault, exit 1, so Slurm drains this node and requeues the job.
    write_config("\"/nonexistent-hopstage-root\"", 2);
    let out = prolog_env(
        &config,
        &[
            ("SLURM_NODELIST", "n1"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_JOB_ID", "78"),
            (
                "SLURM_JOB_COMMENT",
                "hopstage: pull data:/proj/input /nonexistent-hopstage-root/x",
            ),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("node fault") && text(&out).contains("mounted"),
        "{}",
        text(&out)
    );

    // Unreadable credentials (config missing): a node fault too.
    let out = prolog_env(
        &env.path("missing.toml"),
        &[("SLURM_NODELIST", "n1"), ("SLURM_JOB_COMMENT", &comment)],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn slurm_parse_shows_and_checks_directives() {
    let env = TestEnv::new();
    let good = env.path("good.sh");
    std::fs::write(
        &good,
        "#!/bin/sh\n#SBATCH -N 1\n#HOPSTAGE pull home:/proj/in /AMLFS/$SLURM_JOB_USER/in\n#HOPSTAGE push /AMLFS/%u/out home:/proj/out/%j\nsrun a.out\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .args([
            "slurm",
            "--config",
            "/nonexistent.toml",
            "parse",
            "--user",
            "alice",
        ])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("pull home:/proj/in -> /AMLFS/alice/in") && t.contains("home:/proj/out/JOBID"),
        "{t}"
    );
    let bad = env.path("bad.sh");
    std::fs::write(
        &bad,
        "#!/bin/sh\n#HOPSTAGE pull home:/x /tmp/x\n#HOPSTAGE pull home:/x $HOME/x\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["slurm", "parse"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("line 3") && text(&out).contains("no shell"),
        "{}",
        text(&out)
    );
}

#[test]
fn slurm_node_prologs_share_a_stage_in_when_asked() {
    let env = TestEnv::new();
    let (data, logs) = containers(&env);
    seed_input(&env);
    write(
        &env.path("in2"),
        "big.bin",
        &crate::util::bytes(20 << 20, 9),
    );
    env.run_json(
        &[
            "push",
            env.path("in2/big.bin").to_str().unwrap(),
            &env.remote("proj/input/big.bin"),
        ],
        0,
    );
    let root = env.path("root");
    std::fs::create_dir_all(&root).unwrap();
    for p in [env.path(""), root.clone()] {
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    let config = env.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "account = \"devstoreaccount1\"\nblob_endpoint = \"{}\"\nkey = \"{}\"\n[alias.data]\ncontainer = \"{data}\"\n[alias.log]\ncontainer = \"{logs}\"\n[slurm]\nallowed_roots = [\"{}\"]\nstate_dir = \"{}/state\"\nshard_nodes = true\nshard_split = 8388608\n",
            env.azurite.endpoint(),
            hopstage::config::AZURITE_KEY,
            root.display(),
            env.path("").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let comment = format!("hopstage: pull data:/proj/input {}/in", root.display());
    let nodes: Vec<_> = ["n1", "n2"]
        .iter()
        .map(|n| {
            prolog_env(
                &config,
                &[
                    ("SLURM_NODELIST", "n[1-2]"),
                    ("SLURMD_NODENAME", n),
                    ("SLURM_JOB_COMMENT", &comment),
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, n) in nodes.into_iter().enumerate() {
        let o = n.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "node {i}: {}", text(&o));
    }
    assert_eq!(
        std::fs::read(root.join("in/big.bin")).unwrap(),
        crate::util::bytes(20 << 20, 9)
    );
    assert_eq!(
        std::fs::metadata(root.join("in/big.bin")).unwrap().uid(),
        NOBODY
    );
    assert_eq!(
        std::fs::read(root.join("in/a.txt")).unwrap(),
        b"alpha input\n"
    );
    assert!(env.path("state/77/stage-in.0.json").exists());
    // The first node filed the combined summary.
    let out = env
        .cmd()
        .args([
            "pull",
            "--quiet",
            &format!("{logs}:/jobs/nobody/77/stage-in.json"),
        ])
        .arg(env.path("sum.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sum: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("sum.json")).unwrap()).unwrap();
    assert_eq!(sum["status"], "ok", "{sum}");
    assert_eq!(
        sum["transfers"][0]["summary"]["files_transferred"], 3,
        "{sum}"
    );
    assert_eq!(
        sum["transfers"][0]["summary"]["bytes_transferred"],
        (20 << 20) + (3 << 20) + 12,
        "{sum}"
    );
}
