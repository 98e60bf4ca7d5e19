//! Each service's `/openapi.json` (generated from the handlers by utoipa, `common::openapi`)
//! matches what the service does: every documented operation is routed, every other method on
//! a documented path is 405, every status (and body shape) a request gets is one the document
//! lists for that operation, and every example in it fits its own schema.

use e2e::{system, Method, Resp, Seed, Svc, System};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The operations api.md requires of each service, plus the ones every service has.
fn required_operations(svc: Svc) -> Vec<(&'static str, &'static str)> {
    let mut ops = match svc {
        Svc::ITEM => vec![("/", "get"), ("/{item_id}", "get")],
        Svc::ALARM => vec![("/", "post"), ("/", "get"), ("/", "delete")],
        Svc::USER => vec![("/", "get"), ("/", "post"), ("/visit", "get")],
        _ => vec![],
    };
    ops.extend([("/health", "get"), ("/ready", "get"), ("/metrics", "get"), ("/openapi.json", "get")]);
    ops
}

async fn document(sys: &System, svc: Svc) -> Value {
    let r = sys.request(Method::GET, sys.port(svc), "/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{svc:?} /openapi.json: {r:?}");
    assert!(r.content_type.starts_with("application/json"), "{r:?}");
    assert_eq!(r.json["openapi"], "3.1.0", "{svc:?}");
    assert!(r.json["paths"].is_object(), "{svc:?} has paths");
    r.json
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.to_ascii_uppercase().as_bytes()).expect("an HTTP method")
}

/// A path of the document made concrete (`/{item_id}` → `/1`).
fn concrete(path: &str) -> String {
    path.replace("{item_id}", "1")
}

/// The documented methods of a path item.
fn methods_of(path_item: &Value) -> Vec<&'static str> {
    METHODS.into_iter().filter(|m| path_item.get(*m).is_some()).collect()
}

/// A body the operation accepts, when it takes one.
fn valid_body(operation: &Value) -> Option<&'static str> {
    operation.get("requestBody").map(|_| r#"{"item_id": 1}"#)
}

fn requires_token(operation: &Value) -> bool {
    operation["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("UserToken").is_some()))
}

fn is_routing_error(r: &Resp) -> bool {
    r.status == 405 || (r.status == 404 && r.json["hint"].as_str().is_some_and(|h| h.starts_with("no route")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_other_methods_are_405() {
    let sys = system!(Seed::Demo);
    let token = sys.token().await;
    for svc in Svc::all() {
        let doc = document(&sys, svc).await;
        let paths = doc["paths"].as_object().expect("paths");
        for (path, op) in required_operations(svc) {
            assert!(
                paths.get(path).and_then(|p| p.get(op)).is_some(),
                "{svc:?}: the document lacks {} {path}",
                op.to_uppercase()
            );
        }
        for (path, item) in paths {
            let documented = methods_of(item);
            assert!(!documented.is_empty(), "{svc:?} {path} has no operation");
            for m in &documented {
                let operation = &item[*m];
                let tok = requires_token(operation).then_some(token.as_str());
                let r = sys.request(method(m), sys.port(svc), &concrete(path), tok, valid_body(operation)).await;
                assert!(!is_routing_error(&r), "{svc:?}: documented {} {path} is not routed: {r:?}", m.to_uppercase());
                assert!(
                    r.status < 400,
                    "{svc:?}: documented {} {path} with valid input fails: {r:?}",
                    m.to_uppercase()
                );
            }
            for m in METHODS.iter().filter(|m| !documented.contains(m)) {
                let r = sys.request(method(m), sys.port(svc), &concrete(path), Some(&token), Some("{}")).await;
                assert_eq!(r.status, 405, "{svc:?}: undocumented {} {path} should be 405: {r:?}", m.to_uppercase());
                // components/responses/MethodNotAllowed
                r.assert_error(405, "Method Not Allowed");
            }
        }
    }
}

/// One request and the operation of the document it exercises.
struct Probe {
    svc: Svc,
    method: &'static str,
    /// The path as documented (the operation's key).
    path: &'static str,
    /// The path requested.
    url: &'static str,
    token: bool,
    body: Option<&'static str>,
    content_type: Option<&'static str>,
}

fn probe(svc: Svc, method: &'static str, path: &'static str, url: &'static str) -> Probe {
    Probe { svc, method, path, url, token: true, body: None, content_type: None }
}

impl Probe {
    fn without_token(mut self) -> Self {
        self.token = false;
        self
    }
    fn body(mut self, body: &'static str) -> Self {
        self.body = Some(body);
        self.content_type = Some("application/json");
        self
    }
    fn content_type(mut self, ct: &'static str) -> Self {
        self.content_type = Some(ct);
        self
    }
}

fn probes(big_body: &'static str) -> Vec<Probe> {
    const ITEM: Svc = Svc::ITEM;
    const ALARM: Svc = Svc::ALARM;
    const USER: Svc = Svc::USER;
    let mut out = Vec::new();
    // The shared endpoints, without a token.
    for svc in Svc::all() {
        for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
            out.push(probe(svc, "get", path, path).without_token());
        }
    }
    // Valid requests and missing tokens on every contract operation.
    for (svc, method, path, url, body) in [
        (ITEM, "get", "/", "/", None),
        (ITEM, "get", "/{item_id}", "/1", None),
        (ALARM, "post", "/", "/", Some(r#"{"item_id": "2"}"#)),
        (ALARM, "get", "/", "/", None),
        (ALARM, "delete", "/", "/", Some(r#"{"item_id": 2}"#)),
        (USER, "get", "/", "/", None),
        (USER, "post", "/", "/", None),
        (USER, "get", "/visit", "/visit", None),
    ] {
        let valid = probe(svc, method, path, url);
        let missing = probe(svc, method, path, url).without_token();
        match body {
            Some(b) => out.extend([valid.body(b), missing.body(b)]),
            None => out.extend([valid, missing]),
        }
    }
    // Bad and unknown ids, bad bodies.
    out.extend([
        probe(ITEM, "get", "/{item_id}", "/abc"),
        probe(ITEM, "get", "/{item_id}", "/99999999999999999999"),
        probe(ITEM, "get", "/{item_id}", "/100000"),
        probe(ITEM, "get", "/{item_id}", "/-1"),
    ]);
    for method in ["post", "delete"] {
        out.extend([
            probe(ALARM, method, "/", "/").body(r#"{"item_id": "abc"}"#),
            probe(ALARM, method, "/", "/").body(r#"{"item_id": 1.5}"#),
            probe(ALARM, method, "/", "/").body("not json"),
            probe(ALARM, method, "/", "/"),
            probe(ALARM, method, "/", "/").body(r#"{"item_id": 100000}"#),
            probe(ALARM, method, "/", "/").body(r#"{"item_id": 3000000000}"#),
            probe(ALARM, method, "/", "/").body(big_body),
            probe(ALARM, method, "/", "/").body(r#"{"item_id": 1}"#).content_type("text/xml"),
        ]);
    }
    out
}

async fn send(sys: &System, token: &str, p: &Probe) -> Resp {
    let mut req = sys.http.request(method(p.method), format!("http://127.0.0.1:{}{}", sys.port(p.svc), p.url));
    if p.token {
        req = req.header("USER-TOKEN", token);
    }
    if let Some(ct) = p.content_type {
        req = req.header("content-type", ct);
    }
    if let Some(b) = p.body {
        req = req.body(b.to_string());
    }
    Resp::send(req).await
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local $ref");
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("{r} resolves")))
        }
        None => v,
    }
}

/// Whether `value` is of the JSON Schema type `name`.
fn is_type(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unexpected schema type {other}"),
    }
}

/// Where `value` breaks `schema` (the subset of OpenAPI 3.1 schemas our documents use).
fn mismatch(doc: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        let fits = options.iter().filter(|s| mismatch(doc, s, value, at).is_none()).count();
        return (fits != 1).then(|| format!("{at}: {value} fits {fits} of oneOf"));
    }
    // 3.1: `"type": "string"` or `"type": ["string", "null"]`
    let type_ok = match &schema["type"] {
        Value::Null => true,
        Value::String(t) => is_type(t, value),
        Value::Array(ts) => ts.iter().any(|t| is_type(t.as_str().expect("a type name"), value)),
        other => panic!("unexpected schema type {other}"),
    };
    if !type_ok {
        return Some(format!("{at}: {value} is not {}", schema["type"]));
    }
    if let (Some(max), Some(s)) = (schema["maxLength"].as_u64(), value.as_str()) {
        if s.chars().count() as u64 > max {
            return Some(format!("{at}: {value} is longer than {max}"));
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            return Some(format!("{at}: {value} is below {min}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Some(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    if let Some(obj) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().expect("a property name");
            if !obj.contains_key(key) {
                return Some(format!("{at}: missing {key}"));
            }
        }
        let props = schema["properties"].as_object();
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => {
                    if let Some(m) = mismatch(doc, s, v, &format!("{at}.{k}")) {
                        return Some(m);
                    }
                }
                None if schema["additionalProperties"] == false => {
                    return Some(format!("{at}: unexpected property {k}"))
                }
                None => {
                    if let Some(s) = schema["additionalProperties"].as_object() {
                        let s = Value::Object(s.clone());
                        if let Some(m) = mismatch(doc, &s, v, &format!("{at}.{k}")) {
                            return Some(m);
                        }
                    }
                }
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        // The first few entries are enough to catch a drifted shape.
        for (i, v) in values.iter().take(3).enumerate() {
            if let Some(m) = mismatch(doc, items, v, &format!("{at}[{i}]")) {
                return Some(m);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_observed_status_and_body_is_documented_for_its_operation() {
    let sys = system!(Seed::Demo);
    let token = sys.token().await;
    let docs: Vec<(Svc, Value)> = {
        let mut v = Vec::new();
        for svc in Svc::all() {
            v.push((svc, document(&sys, svc).await));
        }
        v
    };
    let big: &'static str = Box::leak(json!({"item_id": 1, "pad": "x".repeat(20_000)}).to_string().into_boxed_str());
    let mut seen = std::collections::BTreeSet::new();
    for p in probes(big) {
        let doc = &docs.iter().find(|(s, _)| *s == p.svc).expect("doc").1;
        let operation = &doc["paths"][p.path][p.method];
        assert!(operation.is_object(), "{:?}: {} {} is not documented", p.svc, p.method, p.path);
        let r = send(&sys, &token, &p).await;
        let what = format!(
            "{:?} {} {} (operation {} {}, token: {}, body: {:.60?}) -> {}",
            p.svc,
            p.method.to_uppercase(),
            p.url,
            p.method.to_uppercase(),
            p.path,
            p.token,
            p.body,
            r.status
        );
        seen.insert(r.status);
        let documented = &operation["responses"][r.status.to_string()];
        assert!(documented.is_object(), "{what}: status not documented; body {}", r.text);
        let documented = resolve(doc, documented);
        let Some(content) = documented["content"].as_object() else {
            assert!(r.text.is_empty(), "{what}: documented without a body: {}", r.text);
            continue;
        };
        let essence = r.content_type.split(';').next().unwrap_or("").trim();
        let media =
            content.get(essence).unwrap_or_else(|| panic!("{what}: content type {:?} not documented", r.content_type));
        if essence == "application/json" {
            if let Some(m) = mismatch(doc, &media["schema"], &r.json, "body") {
                panic!("{what}: body does not match the documented schema: {m}\n{}", r.text);
            }
        }
        if r.status == 503 {
            assert!(documented["headers"].get("Retry-After").is_some(), "{what}: Retry-After documented");
        }
    }
    // The probes really exercised the error statuses, not only successes.
    for status in [200, 201, 400, 401, 404, 413, 415] {
        assert!(seen.contains(&status), "no probe got {status}: {seen:?}");
    }
}

/// Every example in a document: (where, the example, the schema it illustrates).
fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        for e in schema["examples"].as_array().into_iter().flatten() {
            out.push((format!("schema {name}"), e.clone(), schema.clone()));
        }
        for (prop, p) in schema["properties"].as_object().into_iter().flatten() {
            for e in p["examples"].as_array().into_iter().flatten() {
                out.push((format!("schema {name}.{prop}"), e.clone(), p.clone()));
            }
        }
    }
    let mut media = Vec::new();
    for (name, r) in doc["components"]["responses"].as_object().expect("responses") {
        for (ct, m) in r["content"].as_object().into_iter().flatten() {
            media.push((format!("response {name} {ct}"), m.clone()));
        }
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let at = format!("{} {path}", method.to_uppercase());
            for (ct, m) in op["requestBody"]["content"].as_object().into_iter().flatten() {
                media.push((format!("{at} request {ct}"), m.clone()));
            }
            for (status, r) in op["responses"].as_object().into_iter().flatten() {
                for (ct, m) in r["content"].as_object().into_iter().flatten() {
                    media.push((format!("{at} {status} {ct}"), m.clone()));
                }
            }
        }
    }
    for (at, m) in media {
        if let Some(e) = m.get("example") {
            out.push((at.clone(), e.clone(), m["schema"].clone()));
        }
        for (name, e) in m["examples"].as_object().into_iter().flatten() {
            out.push((format!("{at} example {name}"), e["value"].clone(), m["schema"].clone()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_fits_its_schema_and_the_contracts_examples_are_there() {
    let sys = system!(Seed::Demo);
    for svc in Svc::all() {
        let doc = document(&sys, svc).await;
        let all = examples(&doc);
        assert!(all.len() >= 10, "{svc:?}: only {} examples", all.len());
        for (at, example, schema) in &all {
            if let Some(m) = mismatch(&doc, schema, example, "example") {
                panic!("{svc:?} {at}: the example does not fit its schema: {m}");
            }
        }
        // api.md's examples, as they appear there
        let item = json!({"id": 50, "name": "...", "broadcaster": "cjmall", "category": "패션·잡화", "price": 78900, "is_alarm_set": true});
        assert_eq!(doc["components"]["schemas"]["Item"]["examples"][0], item, "{svc:?}");
        let unauthorized = json!({"result": "Unauthorized", "hint": "USER-TOKEN header is missing"});
        assert_eq!(
            doc["components"]["responses"]["Unauthorized"]["content"]["application/json"]["example"],
            unauthorized
        );
        let values: Vec<&Value> = all.iter().map(|(_, e, _)| e).collect();
        match svc {
            Svc::ALARM => {
                for body in [json!({"item_id": 50}), json!({"item_id": "50"})] {
                    assert!(values.contains(&&body), "alarm: the contract's body {body} is an example");
                }
            }
            Svc::USER => {
                let user = json!({"id": 10, "name": "...", "access_token": "..."});
                assert_eq!(doc["components"]["schemas"]["User"]["examples"][0], user);
                assert!(values.contains(&&json!({"count": 0, "payload": []})), "user: the empty /visit");
            }
            _ => {}
        }
    }
}
