//! A validator for request bodies against the official Azure REST API specs
//! (OpenAPI 2.0) saved in `../shared/specs/arm/`: finds the operation by
//! method and concrete path, takes its `in: body` parameter schema, and
//! checks the body — `$ref`s resolved across files (lazily: only what the
//! body reaches), `allOf` merged, required fields, types, enums, patterns,
//! read-only fields not sent, and no property the schema does not declare.
//!
//! A missing spec directory is a test failure naming where it was looked
//! for; there is no silent skip.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub struct Specs {
    root: PathBuf,
    files: HashMap<PathBuf, Value>,
}

impl Specs {
    pub fn open() -> Specs {
        let mut candidates = Vec::new();
        if let Ok(p) = std::env::var("HOPSTAGE_ARM_SPECS") {
            candidates.push(PathBuf::from(p));
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        candidates.push(manifest.join("../shared/specs/arm"));
        candidates.push(PathBuf::from("/work/shared/specs/arm"));
        let root = candidates
            .iter()
            .find(|p| p.join("MANIFEST.md").is_file())
            .unwrap_or_else(|| {
                panic!(
                    "the Azure REST API specs were not found (looked in {candidates:?}): set HOPSTAGE_ARM_SPECS to the shared specs' arm/ directory"
                )
            })
            .clone();
        Specs {
            root,
            files: HashMap::new(),
        }
    }

    fn load(&mut self, file: &Path) -> Value {
        let file = normalize(file);
        if let Some(v) = self.files.get(&file) {
            return v.clone();
        }
        let text = std::fs::read_to_string(self.root.join(&file))
            .unwrap_or_else(|e| panic!("spec file {}: {e}", file.display()));
        let v: Value = serde_json::from_str(&text).expect("spec JSON");
        self.files.insert(file.clone(), v.clone());
        v
    }

    /// Resolves `r` (`./x.json#/a/b`, `#/a/b`) relative to `base`.
    fn resolve(&mut self, base: &Path, r: &str) -> (PathBuf, Value) {
        let (file_part, pointer) = r.split_once('#').unwrap_or((r, ""));
        let file = if file_part.is_empty() {
            base.to_path_buf()
        } else {
            normalize(&base.parent().unwrap_or(Path::new("")).join(file_part))
        };
        let doc = self.load(&file);
        let v = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("unresolved $ref {r} from {}", base.display()))
            .clone();
        (file, v)
    }

    /// Validates `body` for `method path` (path without query) in `file`.
    pub fn validate(&mut self, file: &str, method: &str, path: &str, body: &Value) -> Vec<String> {
        let file = PathBuf::from(file);
        let doc = self.load(&file);
        let paths = doc["paths"].as_object().expect("paths");
        let op = paths
            .iter()
            .find(|(template, item)| item.get(method).is_some() && matches_template(template, path))
            .map(|(_, item)| item[method].clone())
            .unwrap_or_else(|| {
                panic!("no {method} operation in {} matches {path}", file.display())
            });
        let mut schema = None;
        for p in op["parameters"].as_array().expect("parameters") {
            let (pf, p) = match p.get("$ref").and_then(Value::as_str) {
                Some(r) => self.resolve(&file, r),
                None => (file.clone(), p.clone()),
            };
            if p["in"] == "body" {
                schema = Some((pf, p["schema"].clone()));
            }
        }
        let (sf, schema) = schema.unwrap_or_else(|| panic!("{method} {path}: no body parameter"));
        let mut errs = Vec::new();
        self.check(&sf, &schema, body, "$", &mut errs);
        errs
    }

    /// The object view of a schema: properties and required, `allOf` merged.
    fn object_view(
        &mut self,
        file: &Path,
        schema: &Value,
        props: &mut BTreeMap<String, (PathBuf, Value)>,
        required: &mut Vec<String>,
        additional: &mut Option<(PathBuf, Value)>,
    ) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let (f, s) = self.resolve(file, r);
            return self.object_view(&f, &s, props, required, additional);
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            self.object_view(file, part, props, required, additional);
        }
        if let Some(p) = schema["properties"].as_object() {
            for (k, v) in p {
                props.insert(k.clone(), (file.to_path_buf(), v.clone()));
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            if let Some(r) = r.as_str() {
                required.push(r.to_string());
            }
        }
        if schema["additionalProperties"].is_object() {
            *additional = Some((file.to_path_buf(), schema["additionalProperties"].clone()));
        }
    }

    fn check(&mut self, file: &Path, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let (f, s) = self.resolve(file, r);
            return self.check(&f, &s, v, at, errs);
        }
        let ty = schema["type"].as_str().unwrap_or(
            if schema["properties"].is_object() || schema["allOf"].is_array() {
                "object"
            } else {
                ""
            },
        );
        match ty {
            "object" => {
                let Some(obj) = v.as_object() else {
                    errs.push(format!("{at}: expected an object"));
                    return;
                };
                let (mut props, mut required, mut additional) = (BTreeMap::new(), Vec::new(), None);
                self.object_view(file, schema, &mut props, &mut required, &mut additional);
                for r in &required {
                    if !obj.contains_key(r) {
                        errs.push(format!("{at}: required property '{r}' missing"));
                    }
                }
                for (k, val) in obj {
                    let here = format!("{at}.{k}");
                    match props.get(k).cloned() {
                        Some((pf, ps)) => {
                            let ps_resolved = match ps.get("$ref").and_then(Value::as_str) {
                                Some(r) => self.resolve(&pf, r).1,
                                None => ps.clone(),
                            };
                            if ps["readOnly"] == true || ps_resolved["readOnly"] == true {
                                errs.push(format!("{here}: read-only property sent"));
                            }
                            self.check(&pf, &ps, val, &here, errs);
                        }
                        None => match additional.clone() {
                            Some((af, a)) => self.check(&af, &a, val, &here, errs),
                            None => errs.push(format!("{here}: property not in the spec")),
                        },
                    }
                }
            }
            "array" => {
                let Some(items) = v.as_array() else {
                    errs.push(format!("{at}: expected an array"));
                    return;
                };
                for (i, it) in items.iter().enumerate() {
                    self.check(file, &schema["items"], it, &format!("{at}[{i}]"), errs);
                }
            }
            "string" => {
                let Some(s) = v.as_str() else {
                    errs.push(format!("{at}: expected a string"));
                    return;
                };
                if let Some(e) = schema["enum"].as_array() {
                    if !e
                        .iter()
                        .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(s)))
                    {
                        errs.push(format!("{at}: '{s}' not in enum {e:?}"));
                    }
                }
                if let Some(p) = schema["pattern"].as_str() {
                    let re = regex::Regex::new(p).expect("spec pattern");
                    if !re.is_match(s) {
                        errs.push(format!("{at}: '{s}' does not match pattern {p}"));
                    }
                }
                if let Some(max) = schema["maxLength"].as_u64() {
                    if s.chars().count() as u64 > max {
                        errs.push(format!("{at}: longer than {max}"));
                    }
                }
                if schema["format"] == "uuid" && uuid::Uuid::parse_str(s).is_err() {
                    errs.push(format!("{at}: '{s}' is not a uuid"));
                }
            }
            "integer" => {
                if !(v.is_i64() || v.is_u64()) {
                    errs.push(format!("{at}: expected an integer"));
                } else if let (Some(min), Some(x)) = (schema["minimum"].as_f64(), v.as_f64()) {
                    if x < min {
                        errs.push(format!("{at}: {x} below minimum {min}"));
                    }
                }
            }
            "number" if !v.is_number() => errs.push(format!("{at}: expected a number")),
            "boolean" if !v.is_boolean() => errs.push(format!("{at}: expected a boolean")),
            _ => {}
        }
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// `/a/{x}/b` matches `/a/anything/b`; `{scope}` spans segments.
fn matches_template(template: &str, path: &str) -> bool {
    let mut re = String::from("(?i)^");
    for part in template.split(['{', '}']).enumerate() {
        match part {
            (i, name) if i % 2 == 1 => re.push_str(if name == "scope" { "/?.+" } else { "[^/]+" }),
            (_, lit) => re.push_str(&regex::escape(lit)),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(path))
}
