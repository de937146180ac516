//! A fake Azure Resource Manager on 127.0.0.1 for `bootstrap apply` tests.
//! It enforces the official REST specs on every PUT/POST body (through
//! `util::swagger`, 400 on any violation), keeps resources in memory, and
//! behaves like ARM where apply must cope: the storage account answers 202 +
//! `Location`, AMLFS answers 201 + `Azure-AsyncOperation` and goes Creating →
//! Succeeded (or Failed) over a few polls, peerings report `Initiated` until
//! both sides exist, and faults can be injected (429 with Retry-After, a 409
//! `RoleAssignmentExists`, a file system that never finishes).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::swagger::Specs;

#[derive(Default)]
pub struct Knobs {
    /// Request numbers (1-based, all methods) answered 429 Retry-After: 1.
    pub throttle: Vec<usize>,
    /// AMLFS provisioning fails.
    pub amlfs_fail: bool,
    /// Polls (of the operation or the resource) before AMLFS is done.
    pub amlfs_ticks: usize,
    /// The first role-assignment PUT answers 409 RoleAssignmentExists.
    pub role_conflict_once: bool,
    /// What getRequiredAmlFSSubnetsSize answers (default 24, the spec's example).
    pub subnet_need: Option<u64>,
}

#[derive(Default)]
struct State {
    resources: BTreeMap<String, Value>,
    /// Ticks left for a resource in progress, by path.
    pending: BTreeMap<String, usize>,
    /// Location polls left, by id.
    locations: BTreeMap<String, usize>,
    calls: Vec<(String, String)>,
    knobs: Knobs,
    seq: usize,
}

pub struct FakeArm {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeArm {
    pub fn start() -> FakeArm {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().knobs.amlfs_ticks = 2;
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            let specs = Arc::new(Mutex::new(Specs::open()));
            for conn in listener.incoming() {
                let Ok(c) = conn else { continue };
                let (st, specs) = (Arc::clone(&st), Arc::clone(&specs));
                std::thread::spawn(move || {
                    let _ = serve(c, &st, &specs, port);
                });
            }
        });
        FakeArm { port, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.state.lock().unwrap().knobs);
    }

    /// (method, path) of every request so far.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    pub fn seed(&self, path: &str, v: Value) {
        self.state
            .lock()
            .unwrap()
            .resources
            .insert(path.to_lowercase(), v);
    }

    pub fn remove(&self, path: &str) {
        self.state
            .lock()
            .unwrap()
            .resources
            .remove(&path.to_lowercase());
    }

    /// Lets every operation in progress finish within two polls.
    pub fn finish_soon(&self) {
        let mut s = self.state.lock().unwrap();
        for v in s.pending.values_mut() {
            *v = (*v).min(2);
        }
        s.knobs.amlfs_ticks = 2;
    }
}

fn spec_file(path: &str) -> Option<(&'static str, &'static str)> {
    let p = path.to_lowercase();
    let files: [(&str, &str, &str); 7] = [
        ("/providers/microsoft.authorization/roleassignments/", "authorization/resource-manager/Microsoft.Authorization/Authorization/stable/2022-04-01/authorization-RoleAssignmentsCalls.json", "2022-04-01"),
        ("/blobservices/default/containers/", "storage/resource-manager/Microsoft.Storage/Storage/stable/2025-01-01/blob.json", "2025-01-01"),
        ("/providers/microsoft.storage/storageaccounts/", "storage/resource-manager/Microsoft.Storage/Storage/stable/2025-01-01/storage.json", "2025-01-01"),
        ("/subnets/", "network/resource-manager/Microsoft.Network/Network/stable/2025-05-01/virtualNetwork.json", "2025-05-01"),
        ("/virtualnetworkpeerings/", "network/resource-manager/Microsoft.Network/Network/stable/2025-05-01/virtualNetwork.json", "2025-05-01"),
        ("/securityrules/", "network/resource-manager/Microsoft.Network/Network/stable/2025-05-01/networkSecurityGroup.json", "2025-05-01"),
        ("/providers/microsoft.storagecache/", "storagecache/resource-manager/Microsoft.StorageCache/StorageCache/stable/2024-07-01/amlfilesystem.json", "2024-07-01"),
    ];
    files
        .iter()
        .find(|(k, _, _)| p.contains(k))
        .map(|(_, f, v)| (*f, *v))
}

fn respond(
    mut c: &TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &Value,
) -> std::io::Result<()> {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut h = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", text.len());
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    c.write_all(h.as_bytes())?;
    c.write_all(text.as_bytes())
}

/// 202 Accepted with a `Location` to poll.
fn accepted(c: &TcpStream, port: u16, id: &str) -> std::io::Result<()> {
    respond(
        c,
        202,
        &[(
            "location",
            format!("http://127.0.0.1:{port}/locations/{id}"),
        )],
        &Value::Null,
    )
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn serve(c: TcpStream, st: &Mutex<State>, specs: &Mutex<Specs>, port: u16) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut len = 0usize;
    let mut auth = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        let lower = h.to_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        auth |= lower.starts_with("authorization:");
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let key = path.to_lowercase();
    let mut s = st.lock().unwrap();
    s.seq += 1;
    s.calls.push((method.clone(), path.to_string()));
    if auth {
        // A loopback client must not send a token here (none exists).
        return respond(
            &c,
            400,
            &[],
            &error("UnexpectedToken", "no credential expected on loopback"),
        );
    }
    if s.knobs.throttle.contains(&s.seq) {
        return respond(
            &c,
            429,
            &[("retry-after", "1".into())],
            &error("TooManyRequests", "throttled"),
        );
    }
    // Operation and location polls.
    if let Some(id) = key.strip_prefix("/ops/") {
        let target = id.replace('~', "/");
        let left = s.pending.get(&target).copied().unwrap_or(0);
        let status = if left > 0 {
            s.pending.insert(target.clone(), left - 1);
            if left == 1 {
                finish(&mut s, &target)
            } else {
                "InProgress"
            }
        } else {
            match s.resources.get(&target) {
                Some(v) if v["properties"]["provisioningState"] == "Failed" => "Failed",
                _ => "Succeeded",
            }
        };
        let body = if status == "Failed" {
            json!({"status": status, "error": {"code": "ProvisioningFailed", "message": "AMLFS deployment failed: subnet has no room"}})
        } else {
            json!({"status": status})
        };
        return respond(&c, 200, &[], &body);
    }
    if let Some(id) = key.strip_prefix("/locations/") {
        let left = s.locations.get(id).copied().unwrap_or(0);
        if left > 0 {
            s.locations.insert(id.to_string(), left - 1);
            return accepted(&c, port, id);
        }
        return respond(&c, 200, &[], &Value::Null);
    }
    let Some((file, version)) = spec_file(path) else {
        return respond(&c, 404, &[], &error("NoRegisteredProviderFound", path));
    };
    if !query.contains(&format!("api-version={version}")) {
        return respond(
            &c,
            400,
            &[],
            &error(
                "InvalidApiVersionParameter",
                &format!("use api-version={version}"),
            ),
        );
    }
    // Every body is checked against the REST spec of its operation.
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if method != "GET" {
        drop(s);
        let errs = specs
            .lock()
            .unwrap()
            .validate(file, &method.to_lowercase(), path, &v);
        if !errs.is_empty() {
            return respond(
                &c,
                400,
                &[],
                &error("InvalidRequestContent", &errs.join("; ")),
            );
        }
        s = st.lock().unwrap();
    }
    match method.as_str() {
        "GET" => {
            if let Some(left) = s.pending.get(&key).copied() {
                if left > 0 {
                    s.pending.insert(key.clone(), left - 1);
                    if left == 1 {
                        finish(&mut s, &key);
                    }
                }
            }
            match s.resources.get(&key) {
                Some(v) => respond(&c, 200, &[], v),
                None => respond(&c, 404, &[], &error("ResourceNotFound", "not found")),
            }
        }
        "PUT" | "POST" => {
            if method == "POST" && key.ends_with("/getrequiredamlfssubnetssize") {
                let need = s.knobs.subnet_need.unwrap_or(24);
                return respond(&c, 200, &[], &json!({ "filesystemSubnetSize": need }));
            }
            if method == "POST" {
                let prefix = s
                    .resources
                    .iter()
                    .find(|(k, _)| {
                        v["filesystemSubnet"]
                            .as_str()
                            .is_some_and(|f| f.to_lowercase() == **k)
                    })
                    .and_then(|(_, r)| {
                        r["properties"]["addressPrefix"]
                            .as_str()
                            .map(str::to_string)
                    });
                return match prefix {
                    None => respond(
                        &c,
                        400,
                        &[],
                        &json!({"filesystemSubnet": {"status": "Invalid", "message": "subnet not found"}, "error": {"code": "InvalidSubnet", "message": "subnet not found"}}),
                    ),
                    Some(p) if p.ends_with("/28") || p.ends_with("/29") => {
                        respond(&c, 400, &[], &error("InvalidSubnet", "subnet too small"))
                    }
                    Some(_) => respond(&c, 200, &[], &Value::Null),
                };
            }
            let name = path.rsplit('/').next().unwrap_or_default();
            let mut res = v.clone();
            res["id"] = json!(path);
            res["name"] = json!(name);
            if res.get("properties").is_none() {
                res["properties"] = json!({});
            }
            if key.contains("/roleassignments/") {
                if s.knobs.role_conflict_once {
                    s.knobs.role_conflict_once = false;
                    return respond(
                        &c,
                        409,
                        &[],
                        &error(
                            "RoleAssignmentExists",
                            "The role assignment already exists.",
                        ),
                    );
                }
                res["properties"]["provisioningState"] = Value::Null;
                res["properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove("provisioningState");
                s.resources.insert(key.clone(), res.clone());
                return respond(&c, 201, &[], &res);
            }
            if key.contains("/microsoft.storagecache/amlfilesystems/") {
                res["properties"]["provisioningState"] = json!("Creating");
                let ticks = s.knobs.amlfs_ticks;
                s.pending.insert(key.clone(), ticks.max(1));
                s.resources.insert(key.clone(), res.clone());
                let op = format!("http://127.0.0.1:{port}/ops/{}", key.replace('/', "~"));
                return respond(&c, 201, &[("azure-asyncoperation", op)], &res);
            }
            if key.contains("/virtualnetworkpeerings/") {
                res["properties"]["peeringState"] = json!("Initiated");
            }
            res["properties"]["provisioningState"] = json!("Succeeded");
            s.resources.insert(key.clone(), res.clone());
            connect_peerings(&mut s);
            if key.contains("/storageaccounts/") && !key.contains("/blobservices/") {
                let id = format!("{}", s.seq);
                s.locations.insert(id.clone(), 1);
                return accepted(&c, port, &id);
            }
            respond(
                &c,
                if key.contains("/containers/") {
                    201
                } else {
                    200
                },
                &[],
                &res,
            )
        }
        "PATCH" => {
            let Some(r) = s.resources.get_mut(&key) else {
                return respond(&c, 404, &[], &error("ResourceNotFound", "not found"));
            };
            if let (Some(live), Some(patch)) =
                (r["properties"].as_object_mut(), v["properties"].as_object())
            {
                for (k, val) in patch {
                    live.insert(k.clone(), val.clone());
                }
            }
            let id = format!("{}", s.seq);
            s.locations.insert(id.clone(), 1);
            accepted(&c, port, &id)
        }
        _ => respond(&c, 405, &[], &error("MethodNotAllowed", &method)),
    }
}

/// Ends a pending AMLFS; returns the operation status.
fn finish(s: &mut State, key: &str) -> &'static str {
    let fail = s.knobs.amlfs_fail;
    s.pending.remove(key);
    if let Some(r) = s.resources.get_mut(key) {
        if fail {
            r["properties"]["provisioningState"] = json!("Failed");
            r["properties"]["health"] =
                json!({"state": "Unavailable", "statusDescription": "subnet has no room"});
            return "Failed";
        }
        r["properties"]["provisioningState"] = json!("Succeeded");
        r["properties"]["health"] = json!({"state": "Available"});
        r["properties"]["clientInfo"] = json!({
            "mgsAddress": "10.1.0.4",
            "mountCommand": "mount -t lustre -o noatime,flock 10.1.0.4@tcp:/lustrefs /lustre/lustrefs",
            "lustreVersion": "2.15.0"
        });
    }
    "Succeeded"
}

/// A peering is Connected once the reverse one exists.
fn connect_peerings(s: &mut State) {
    let peerings: Vec<(String, String)> = s
        .resources
        .iter()
        .filter(|(k, _)| k.contains("/virtualnetworkpeerings/"))
        .map(|(k, v)| {
            let vnet = k
                .split("/virtualnetworkpeerings/")
                .next()
                .unwrap_or_default()
                .to_string();
            (
                vnet,
                v["properties"]["remoteVirtualNetwork"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase(),
            )
        })
        .collect();
    let keys: Vec<String> = s
        .resources
        .keys()
        .filter(|k| k.contains("/virtualnetworkpeerings/"))
        .cloned()
        .collect();
    for k in keys {
        let vnet = k
            .split("/virtualnetworkpeerings/")
            .next()
            .unwrap_or_default()
            .to_string();
        let remote = s.resources[&k]["properties"]["remoteVirtualNetwork"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        if peerings.iter().any(|(v, r)| *v == remote && *r == vnet) {
            if let Some(r) = s.resources.get_mut(&k) {
                r["properties"]["peeringState"] = json!("Connected");
            }
        }
    }
}
