//! Applying a plan: every step GET first, then only what is missing or
//! different is written, in order; long-running operations are waited for;
//! role assignments are given time to propagate before AMLFS is created.
//!
//! Owns the reconcile rules. Invariants: a live value that differs in a
//! create-only field stops the run with both values named (never a silent
//! replace); a resource found mid-operation (an interrupted earlier apply) is
//! waited for, not written again; a rerun after success writes nothing.

use std::time::Duration;

use serde_json::Value;

use super::arm::{Arm, Response};
use super::plan::{Kind, Step};

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// It did not exist and was created.
    Created,
    /// It existed with different (changeable) values and was updated.
    Updated,
    /// It existed as wanted.
    AlreadyCorrect,
    /// A preflight check passed.
    Checked,
}

/// Options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wait after creating role assignments, before AMLFS (propagation: up
    /// to 5 minutes per the AMLFS documentation).
    pub role_wait: Duration,
}

/// The result of one step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Done {
    /// The step's title.
    pub title: String,
    /// What happened.
    pub action: Action,
}

/// Differences between the wanted `want` and the live `live`, as
/// `(dotted.path, wanted, live)`; live fields not in `want` are ignored.
pub fn diff(want: &Value, live: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    walk(want, live, "", &mut out);
    out
}

fn walk(want: &Value, live: &Value, at: &str, out: &mut Vec<(String, Value, Value)>) {
    match want {
        Value::Object(m) => {
            for (k, w) in m {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                walk(w, live.get(k).unwrap_or(&Value::Null), &here, out);
            }
        }
        _ if same(want, live) => {}
        _ => out.push((at.to_string(), want.clone(), live.clone())),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(_), Value::Object(_)) => diff(a, b).is_empty(),
        _ => a == b,
    }
}

/// The body to PUT over a live subnet: its other writable settings kept.
fn merge_subnet(want: &Value, live: &Value) -> Value {
    let mut body = want.clone();
    let lp = &live["properties"];
    for k in ["networkSecurityGroup", "routeTable", "natGateway"] {
        if let Some(id) = lp[k]["id"].as_str() {
            body["properties"][k] = serde_json::json!({ "id": id });
        }
    }
    if let Some(se) = lp["serviceEndpoints"].as_array() {
        let kept: Vec<Value> = se
            .iter()
            .filter_map(|s| {
                s["service"]
                    .as_str()
                    .map(|svc| serde_json::json!({ "service": svc }))
            })
            .collect();
        body["properties"]["serviceEndpoints"] = Value::Array(kept);
    }
    if let Some(d) = lp["delegations"].as_array() {
        let kept: Vec<Value> = d
            .iter()
            .filter_map(|x| {
                Some(serde_json::json!({
                    "name": x["name"].as_str()?,
                    "properties": { "serviceName": x["properties"]["serviceName"].as_str()? }
                }))
            })
            .collect();
        body["properties"]["delegations"] = Value::Array(kept);
    }
    body
}

fn in_flight(v: &Value) -> bool {
    matches!(
        v["properties"]["provisioningState"].as_str(),
        Some("Creating" | "Updating" | "Accepted" | "InProgress" | "Provisioning")
    )
}

/// What a live resource means for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Missing: create it.
    Create,
    /// Present and as wanted.
    AlreadyCorrect,
    /// Present with changeable differences (the dotted fields).
    Update(Vec<String>),
    /// A create-only field differs: refuse, with the message.
    Refuse(String),
    /// Present in state Failed.
    Failed(String),
    /// Still being created or updated (an earlier run): wait for it.
    InFlight,
}

/// Compares a step with what is live.
pub fn verdict(step: &Step, live: Option<&Value>) -> Verdict {
    let Some(v) = live else {
        return Verdict::Create;
    };
    if in_flight(v) {
        return Verdict::InFlight;
    }
    if v["properties"]["provisioningState"] == "Failed" {
        return Verdict::Failed(format!(
            "{} exists in state Failed ({}): delete it, then rerun apply",
            step.title,
            v["properties"]["health"]["statusDescription"]
                .as_str()
                .unwrap_or("no detail")
        ));
    }
    let diffs = diff(&step.body, v);
    if diffs.is_empty() {
        return Verdict::AlreadyCorrect;
    }
    let fixed = diffs.iter().find(|(k, _, _)| {
        step.create_only
            .iter()
            .any(|c| k == c || k.starts_with(&format!("{c}.")))
    });
    match fixed {
        Some((k, w, l)) => Verdict::Refuse(format!(
            "{}: '{k}' is {l} on the live resource but {w} in the config, and it cannot change after creation: fix the config or replace the resource by hand",
            step.title
        )),
        None => Verdict::Update(diffs.into_iter().map(|d| d.0).collect()),
    }
}

/// Runs a preflight POST; `Checked` or the reason it failed.
async fn preflight(arm: &Arm, step: &Step) -> Result<Action, String> {
    let r = arm
        .call(step.method, &step.url_path(), Some(&step.body))
        .await
        .map_err(|e| format!("{}: {}: fix network.subnet_prefix", step.title, e.message))?;
    if step.kind == Kind::SubnetSize {
        let need = r.body["filesystemSubnetSize"].as_u64().unwrap_or(0);
        // Azure keeps 5 addresses of every subnet.
        let have = step.subnet_size.unwrap_or(u64::MAX).saturating_sub(5);
        if need > have {
            return Err(format!(
                "network.subnet_prefix has {have} usable addresses; this file system needs {need}: use a larger prefix"
            ));
        }
    }
    Ok(Action::Checked)
}

/// Runs the plan. `report` is called after each step.
pub async fn apply(
    arm: &Arm,
    steps: &[Step],
    opts: &Options,
    mut report: impl FnMut(&Done),
) -> Result<Vec<Done>, String> {
    let mut done = Vec::new();
    let mut roles_created = false;
    for (i, step) in steps.iter().enumerate() {
        let url = step.url_path();
        let action = if step.method == "POST" {
            preflight(arm, step).await?
        } else {
            let mut live = arm.get(&url).await.map_err(|e| e.to_string())?;
            if verdict(step, live.as_ref()) == Verdict::InFlight {
                // An earlier, interrupted apply started this: wait for it.
                let r = Response {
                    status: 200,
                    body: Value::Null,
                    async_op: None,
                    location: None,
                    retry_after: None,
                };
                live = arm.wait(&r, &url).await.map_err(|e| e.to_string())?;
            }
            match verdict(step, live.as_ref()) {
                Verdict::Failed(m) | Verdict::Refuse(m) => return Err(m),
                Verdict::AlreadyCorrect => Action::AlreadyCorrect,
                Verdict::InFlight => {
                    return Err(format!(
                        "{} is still in progress: rerun apply later",
                        step.title
                    ))
                }
                Verdict::Update(_) => {
                    // A file system is changed with PATCH (its maintenance window;
                    // the rest is create-only); others take the whole body again.
                    let (method, body) = match step.kind {
                        Kind::Amlfs => (
                            "PATCH",
                            serde_json::json!({"properties": {
                                "maintenanceWindow": step.body["properties"]["maintenanceWindow"]
                            }}),
                        ),
                        Kind::Subnet => (
                            "PUT",
                            merge_subnet(&step.body, live.as_ref().unwrap_or(&Value::Null)),
                        ),
                        _ => ("PUT", step.body.clone()),
                    };
                    let r = arm
                        .call(method, &url, Some(&body))
                        .await
                        .map_err(|e| e.to_string())?;
                    arm.wait(&r, &url).await.map_err(|e| e.to_string())?;
                    Action::Updated
                }
                Verdict::Create => match arm.call(step.method, &url, Some(&step.body)).await {
                    Ok(r) => {
                        arm.wait(&r, &url).await.map_err(|e| e.to_string())?;
                        if step.kind == Kind::RoleAssignment {
                            roles_created = true;
                        }
                        Action::Created
                    }
                    // The same role for the same principal under another name.
                    Err(e) if e.status == 409 && e.code == "RoleAssignmentExists" => {
                        Action::AlreadyCorrect
                    }
                    Err(e) => return Err(e.to_string()),
                },
            }
        };
        let d = Done {
            title: step.title.clone(),
            action,
        };
        report(&d);
        done.push(d);
        if step.kind == Kind::Peering && steps.get(i + 1).is_none_or(|s| s.kind != Kind::Peering) {
            wait_connected(arm, steps).await?;
        }
        let next_is_role = steps
            .get(i + 1)
            .is_some_and(|s| s.kind == Kind::RoleAssignment);
        if step.kind == Kind::RoleAssignment
            && !next_is_role
            && roles_created
            && !opts.role_wait.is_zero()
        {
            eprintln!(
                "hopstage: waiting {} s for the new role assignments to propagate (AMLFS cannot detect missing roles)",
                opts.role_wait.as_secs()
            );
            tokio::time::sleep(opts.role_wait).await;
        }
    }
    Ok(done)
}

/// Waits until every peering of the plan reports `Connected` (both sides
/// exist and agree), at most 10 minutes.
async fn wait_connected(arm: &Arm, steps: &[Step]) -> Result<(), String> {
    let start = std::time::Instant::now();
    for p in steps.iter().filter(|s| s.kind == Kind::Peering) {
        loop {
            let v = arm.get(&p.url_path()).await.map_err(|e| e.to_string())?;
            let state = v
                .as_ref()
                .and_then(|v| v["properties"]["peeringState"].as_str().map(str::to_string))
                .unwrap_or_default();
            if state == "Connected" {
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                return Err(format!(
                    "{} is '{state}', not Connected, after 10 minutes: check that the address spaces do not overlap",
                    p.title
                ));
            }
            tokio::time::sleep(arm.poll).await;
        }
    }
    Ok(())
}

/// The live plan: each step's verdict against what exists (GETs only; the
/// preflight checks are read-only POSTs and run too).
pub async fn preview(arm: &Arm, steps: &[Step]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut subnet_missing = false;
    for step in steps {
        let v = if step.kind == Kind::SubnetCheck && subnet_missing {
            "runs once the subnet exists".to_string()
        } else if step.method == "POST" {
            match preflight(arm, step).await {
                Ok(_) => "check passes".to_string(),
                Err(e) => format!("CHECK FAILS: {e}"),
            }
        } else {
            let live = arm.get(&step.url_path()).await.map_err(|e| e.to_string())?;
            if step.kind == Kind::Subnet && live.is_none() {
                subnet_missing = true;
            }
            match verdict(step, live.as_ref()) {
                Verdict::Create => "create".into(),
                Verdict::AlreadyCorrect => "already correct".into(),
                Verdict::Update(f) => format!("update ({})", f.join(", ")),
                Verdict::Refuse(m) => format!("REFUSED: {m}"),
                Verdict::Failed(m) => format!("FAILED: {m}"),
                Verdict::InFlight => "in progress (apply waits for it)".into(),
            }
        };
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_ignores_extra_live_fields_and_case() {
        let want = json!({"location": "westeurope", "properties": {"a": 8, "ids": ["X"]}});
        let live = json!({"location": "WestEurope", "id": "/x", "properties": {"a": 8.0, "ids": ["x"], "b": 1}});
        assert!(diff(&want, &live).is_empty());
        let live = json!({"location": "westeurope", "properties": {"a": 16}});
        let d = diff(&want, &live);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, "properties.a");
    }

    #[test]
    fn subnet_merge_keeps_writable_settings() {
        let want = json!({"properties": {"addressPrefix": "10.1.0.0/24"}});
        let live = json!({"properties": {"addressPrefix": "10.1.0.0/25", "provisioningState": "Succeeded",
            "networkSecurityGroup": {"id": "/nsg", "etag": "x"}, "serviceEndpoints": [{"service": "Microsoft.Storage", "provisioningState": "Succeeded"}]}});
        let m = merge_subnet(&want, &live);
        assert_eq!(
            m["properties"]["networkSecurityGroup"],
            json!({"id": "/nsg"})
        );
        assert_eq!(
            m["properties"]["serviceEndpoints"],
            json!([{"service": "Microsoft.Storage"}])
        );
        assert!(m["properties"].get("provisioningState").is_none());
    }
}
