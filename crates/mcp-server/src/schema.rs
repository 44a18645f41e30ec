//! Keeps `tools/list` small. Output schemas are generated from the Rust result types, which
//! nest deeply (a run holds its gate, plan, checks, rollback …). Agents need the top of the
//! result typed — `run_id`, `status`, `steps[]` — not every leaf, so the served output schema
//! inlines references, drops documentation keys, and types nested objects only by their kind
//! below a fixed depth. The full types remain in the Rust source and `schemas/`.

use serde_json::{Map, Value};

const DROP: &[&str] = &["description", "title", "format", "$schema", "minimum", "maximum", "default", "examples"];

/// Object depth kept fully typed (root = 0).
const MAX_DEPTH: usize = 1;

/// Input schemas keep their descriptions (the agent needs them); documented enums become
/// plain `enum` lists and references are inlined.
pub fn compact_input(schema: &Map<String, Value>) -> Map<String, Value> {
    let defs = schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    fn walk(v: &Value, defs: &Map<String, Value>) -> Value {
        let v = resolve(v, defs);
        if let Some(e) = as_enum(v, defs).or_else(|| nullable_enum(v, defs)) {
            return e;
        }
        match v {
            Value::Object(o) => {
                Value::Object(o.iter().filter(|(k, _)| *k != "$defs" && *k != "$schema").map(|(k, x)| (k.clone(), walk(x, defs))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, defs)).collect()),
            other => other.clone(),
        }
    }
    match walk(&Value::Object(schema.clone()), &defs) {
        Value::Object(m) => m,
        _ => schema.clone(),
    }
}

pub fn compact_output(schema: &Map<String, Value>) -> Map<String, Value> {
    let defs = schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    match compact(&Value::Object(schema.clone()), &defs, 0) {
        Value::Object(m) => m,
        _ => schema.clone(),
    }
}

fn resolve<'a>(mut v: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).and_then(|name| defs.get(name)) {
            Some(target) => v = target,
            None => break,
        }
    }
    v
}

/// The JSON types a schema admits, for a schema cut at the depth limit.
fn kinds(v: &Value, defs: &Map<String, Value>) -> Value {
    let v = resolve(v, defs);
    if let Some(t) = v.get("type") {
        return t.clone();
    }
    if v.get("enum").is_some() || v.get("const").is_some() {
        return Value::from("string");
    }
    let alts = v.get("anyOf").or_else(|| v.get("oneOf")).and_then(Value::as_array);
    let mut out: Vec<String> = Vec::new();
    for a in alts.into_iter().flatten() {
        match kinds(a, defs) {
            Value::String(s) => out.push(s),
            Value::Array(xs) => out.extend(xs.into_iter().filter_map(|x| x.as_str().map(str::to_owned))),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    match out.len() {
        0 => Value::Null,
        1 => Value::from(out.remove(0)),
        _ => Value::from(out),
    }
}

/// `oneOf: [{const: a}, {const: b}]` (how schemars writes a documented enum) → `enum: [a, b]`.
fn as_enum(v: &Value, defs: &Map<String, Value>) -> Option<Value> {
    let alts = v.get("oneOf").or_else(|| v.get("anyOf"))?.as_array()?;
    let consts: Option<Vec<Value>> = alts.iter().map(|a| resolve(a, defs).get("const").cloned()).collect();
    let mut e = serde_json::json!({ "type": "string", "enum": consts? });
    if let Some(d) = v.get("description") {
        e["description"] = d.clone();
    }
    Some(e)
}

/// `anyOf: [{enum: [..]}, {type: null}]` (an `Option` of an enum) → one `enum` that admits null.
fn nullable_enum(v: &Value, defs: &Map<String, Value>) -> Option<Value> {
    let alts = v.get("anyOf")?.as_array()?;
    if alts.len() != 2 {
        return None;
    }
    let is_null = |a: &Value| resolve(a, defs).get("type").and_then(Value::as_str) == Some("null");
    let other = alts.iter().find(|a| !is_null(a))?;
    alts.iter().find(|a| is_null(a))?;
    let other = resolve(other, defs);
    let mut values = match as_enum(other, defs) {
        Some(e) => e.get("enum")?.as_array()?.clone(),
        None => other.get("enum")?.as_array()?.clone(),
    };
    values.push(Value::Null);
    let mut e = serde_json::json!({ "type": ["string", "null"], "enum": values });
    if let Some(d) = v.get("description") {
        e["description"] = d.clone();
    }
    Some(e)
}

/// An `Option<Struct>` below the root: typed by kind only.
fn is_optional_object(v: &Value, defs: &Map<String, Value>) -> bool {
    v.get("anyOf").and_then(Value::as_array).is_some_and(|alts| alts.iter().any(|a| resolve(a, defs).get("properties").is_some()))
}

fn compact(v: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let v = resolve(v, defs);
    let Some(obj) = v.as_object() else { return v.clone() };
    if let Some(e) = as_enum(v, defs).or_else(|| nullable_enum(v, defs)) {
        return compact(&e, defs, depth);
    }
    if depth > MAX_DEPTH || (depth >= 1 && is_optional_object(v, defs)) {
        return match kinds(v, defs) {
            Value::Null => Value::Object(Map::new()),
            t => serde_json::json!({ "type": t }),
        };
    }
    let mut out = Map::new();
    for (k, x) in obj {
        if DROP.contains(&k.as_str()) || k == "$defs" {
            continue;
        }
        // Below the root, which fields are always present and whether others may appear is
        // detail an agent does not need; the root keeps its `required` list.
        if depth >= 1 && (k == "required" || (k == "additionalProperties" && x == &Value::Bool(false))) {
            continue;
        }
        let x = match k.as_str() {
            "properties" => Value::Object(
                x.as_object().map(|p| p.iter().map(|(name, s)| (name.clone(), compact(s, defs, depth + 1))).collect()).unwrap_or_default(),
            ),
            "items" | "additionalProperties" if x.is_object() => compact(x, defs, depth),
            "anyOf" | "oneOf" | "allOf" => {
                Value::Array(x.as_array().map(|a| a.iter().map(|s| compact(s, defs, depth)).collect()).unwrap_or_default())
            }
            _ => x.clone(),
        };
        out.insert(k.clone(), x);
    }
    Value::Object(out)
}
