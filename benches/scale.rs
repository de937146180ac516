//! Simulation of a sharded pull on 1–256 nodes, using hopstage's real
//! assignment code (`hopstage::shard::assign::Assigner`) on a synthetic but
//! realistic size distribution, and the expected aggregate throughput against
//! the Blob account and AMLFS limits. `cargo bench --bench scale` prints the
//! Markdown table in docs/scale.md.
//!
//! Distribution (fixed seed): 1,000,000 files — 90 % small (log-uniform
//! 1 KiB–1 MiB), 9 % medium (1–256 MiB), 1 % large (256 MiB–64 GiB), the
//! shape of a project tree with inputs, checkpoints and a few big archives.

use hopstage::shard::assign::{Assigner, SPLIT_MIN};

const KIB: f64 = 1024.0;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn log_uniform(&mut self, lo: f64, hi: f64) -> u64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp() as u64
    }
}

fn sizes(n: usize) -> Vec<u64> {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            let p = r.unit();
            if p < 0.90 {
                r.log_uniform(KIB, 1024.0 * KIB)
            } else if p < 0.99 {
                r.log_uniform(MIB as f64, 256.0 * MIB as f64)
            } else {
                r.log_uniform(256.0 * MIB as f64, 64.0 * GIB as f64)
            }
        })
        .collect()
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let mut r = Rng(7);
    let scenarios: Vec<(&str, Vec<u64>)> = vec![
        ("mixed project tree: 1,000,000 files", sizes(1_000_000)),
        (
            "checkpoint restore: 16 files of 100-500 GiB",
            (0..16)
                .map(|_| r.log_uniform(100.0 * GIB as f64, 500.0 * GIB as f64))
                .collect(),
        ),
        (
            "small files only: 2,000,000 files of 1 KiB-1 MiB",
            (0..2_000_000)
                .map(|_| r.log_uniform(KIB, 1024.0 * KIB))
                .collect(),
        ),
    ];
    for (name, files) in &scenarios {
        println!("\n### {name}\n");
        table(files);
    }
}

fn table(files: &[u64]) {
    let total: u64 = files.iter().sum();
    // Assumptions (docs/scale.md explains them):
    let node_bw = 2.0e9; // bytes/s one client node sustains (NIC, TCP streams)
    let node_rps = 2000.0; // data requests/s one client node sustains
    let account_bw = 200e9 / 8.0; // 200 Gbps egress, standard GPv2 in major regions
    let account_rps = 40_000.0; // requests/s per account
    let amlfs_bw = 500e6 * 512.0; // AMLFS 500 MB/s per TiB × 512 TiB
    let block = 8 * MIB;
    let request = 32 * MIB;
    println!(
        "{} files, {:.1} TiB; split files >= {} MiB; blocks {} MiB; {} MiB per request\n",
        files.len(),
        total as f64 / (1u64 << 40) as f64,
        SPLIT_MIN / MIB,
        block / MIB,
        request / MIB
    );
    println!("| nodes | GiB/rank min–max | byte imbalance (max/mean − 1) | requests/rank min–max | split files | expected GB/s | limited by |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    for n in [1usize, 2, 4, 8, 16, 32, 64, 128, 256] {
        let mut a = Assigner::new(n, SPLIT_MIN);
        let mut split = 0;
        for &s in files {
            if let hopstage::shard::assign::Share::Split(_) = a.assign(s, block, request) {
                split += 1;
            }
        }
        let b = a.bytes();
        let q = a.requests();
        let (bmin, bmax) = (*b.iter().min().unwrap_or(&0), *b.iter().max().unwrap_or(&0));
        let (qmin, qmax) = (*q.iter().min().unwrap_or(&0), *q.iter().max().unwrap_or(&0));
        let mean = b.iter().sum::<u64>() as f64 / n as f64;
        let imbalance = bmax as f64 / mean.max(1.0) - 1.0;
        // The slowest rank's time, and the shared limits' times.
        let slowest = b
            .iter()
            .zip(q)
            .map(|(&x, &r)| x as f64 / node_bw + r as f64 / node_rps)
            .fold(0.0, f64::max);
        let total_reqs: u64 = q.iter().sum();
        let (time, limit) = [
            (slowest, "client nodes"),
            (total as f64 / account_bw, "account egress 200 Gbps"),
            (total_reqs as f64 / account_rps, "account 40k requests/s"),
            (total as f64 / amlfs_bw, "AMLFS 256 GB/s"),
        ]
        .into_iter()
        .fold((0.0, ""), |acc, x| if x.0 > acc.0 { x } else { acc });
        println!(
            "| {n} | {:.1}–{:.1} | {:.2} % | {qmin}–{qmax} | {split} | {:.1} | {limit} |",
            bmin as f64 / GIB as f64,
            bmax as f64 / GIB as f64,
            imbalance * 100.0,
            total as f64 / time / 1e9
        );
    }
}
