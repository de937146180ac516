//! Criterion benches for the hot inner loops: block hashing (xxh3-128 and
//! the transactional MD5), List Blobs page parsing, POSIX metadata
//! encode/decode, blob-name → path mapping, and block planning.

use std::collections::HashMap;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use md5::{Digest, Md5};

fn hashing(c: &mut Criterion) {
    let block = vec![0x5au8; 8 << 20];
    let mut g = c.benchmark_group("block_hash_8MiB");
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("xxh3_128", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_128(black_box(&block)))
    });
    g.bench_function("md5", |b| b.iter(|| Md5::digest(black_box(&block))));
    g.finish();
}

fn list_page(c: &mut Criterion) {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="home"><Prefix>proj/</Prefix><Blobs>"#,
    );
    for i in 0..5000 {
        xml.push_str(&format!(
            "<Blob><Name>proj/d{}/file-{i:05}.dat</Name><Properties><Last-Modified>Fri, 27 Nov 2026 17:39:51 GMT</Last-Modified><Etag>0x8DB{i:08X}</Etag><Content-Length>{}</Content-Length><Content-MD5>XUFAKrxLKna5cZ2REBfFkg==</Content-MD5><BlobType>BlockBlob</BlobType></Properties><Metadata><owner>1000</owner><group>100</group><permissions>0644</permissions><modtime>2026-11-27 17:39:51 +0000</modtime><hopstage_xxh3>0123456789abcdef0123456789abcdef</hopstage_xxh3></Metadata></Blob>",
            i % 50,
            4096 + i
        ));
    }
    xml.push_str("</Blobs><NextMarker>next</NextMarker></EnumerationResults>");
    let mut g = c.benchmark_group("list_page");
    g.throughput(Throughput::Elements(5000));
    g.bench_function("parse_5000_entries_with_metadata", |b| {
        b.iter(|| hopstage::store::parse_list_page(black_box(xml.as_bytes())).map(|(e, _)| e.len()))
    });
    g.finish();
}

fn metadata(c: &mut Criterion) {
    let m: HashMap<String, String> = [
        ("owner", "1000"),
        ("group", "100"),
        ("permissions", "0644"),
        ("modtime", "2026-11-27 17:39:51 +0000"),
        ("hopstage_xxh3", "0123456789abcdef0123456789abcdef"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let p = hopstage::meta::PosixMeta::decode(&m);
    c.bench_function("metadata_decode", |b| {
        b.iter(|| hopstage::meta::PosixMeta::decode(black_box(&m)))
    });
    c.bench_function("metadata_encode", |b| b.iter(|| black_box(&p).encode()));
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("blob_to_relative");
    for name in ["a.txt", "proj/input/mesh/level3/block-000123.h5"] {
        g.bench_with_input(BenchmarkId::from_parameter(name.len()), name, |b, n| {
            b.iter(|| hopstage::pathmap::blob_to_relative(black_box(n)))
        });
    }
    g.finish();
}

fn planning(c: &mut Criterion) {
    c.bench_function("plan_blocks_1TiB", |b| {
        b.iter(|| {
            let size = black_box(1u64 << 40);
            let block = hopstage::engine::chunk::block_size_for(size, 8 << 20);
            hopstage::engine::chunk::ranges(size, block)
                .map(|(o, l)| o ^ l)
                .fold(0, |a, x| a ^ x)
        })
    });
}

criterion_group!(benches, hashing, list_page, metadata, paths, planning);
criterion_main!(benches);
