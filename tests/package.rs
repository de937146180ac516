//! The Debian package installs into a scratch root and runs.

use std::process::Command;

use crate::util::{text, TestEnv};

#[test]
fn deb_installs_into_a_scratch_root_and_runs() {
    let env = TestEnv::new();
    let out_dir = env.path("pkg");
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh"))
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_hopstage"),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let deb = printed
        .lines()
        .find(|l| l.ends_with(".deb"))
        .unwrap()
        .to_string();
    let rpm = printed
        .lines()
        .find(|l| l.ends_with(".rpm"))
        .expect("an .rpm (rpmbuild installed by scripts/deps.sh)")
        .to_string();
    let root = env.path("root");
    let x = Command::new("dpkg-deb")
        .args(["-x", &deb, root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", text(&x));
    let v = Command::new(root.join("usr/bin/hopstage"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success());
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("hopstage "),
        "{}",
        text(&v)
    );
    for f in [
        "usr/share/man/man1/hopstage.1.gz",
        "usr/share/bash-completion/completions/hopstage",
        "usr/share/zsh/vendor-completions/_hopstage",
        "usr/share/fish/vendor_completions.d/hopstage.fish",
    ] {
        assert!(root.join(f).is_file(), "{f}");
    }
    let info = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&info.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-r-----") && l.ends_with("./etc/hopstage/config.toml")),
        "{listing}"
    );
    // The RPM carries the same files, the config as a 0640 %config(noreplace).
    let rroot = env.path("rpmroot");
    std::fs::create_dir_all(&rroot).unwrap();
    let x = Command::new("sh")
        .arg("-c")
        .arg(format!("rpm2cpio '{rpm}' | cpio -idm --quiet"))
        .current_dir(&rroot)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", text(&x));
    let v = Command::new(rroot.join("usr/bin/hopstage"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", text(&v));
    let q = Command::new("rpm")
        .args(["-qp", "--configfiles", &rpm])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("/etc/hopstage/config.toml"),
        "{}",
        text(&q)
    );
    // The example config parses.
    let cfg = std::fs::read_to_string(root.join("etc/hopstage/config.toml")).unwrap();
    hopstage::config::parse_file(&cfg).unwrap();
}
