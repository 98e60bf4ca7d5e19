//! `docker-compose.yml` is valid and keeps the rules of the design: each service is given
//! its own database and no other, nothing is mounted, RabbitMQ runs without guest, and
//! every container has a healthcheck that its dependants wait for.
//! (Docker itself need not run: `docker-compose config` only parses and resolves.)

use std::{
    io::Write,
    process::{Command, Stdio},
};

use serde_json::{Map, Value};

/// `docker-compose config` of the repository's compose file, as JSON; None when
/// docker-compose is not installed.
fn resolved_config() -> Option<Value> {
    let repo = &e2e::env().repo_dir;
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-f").arg(repo.join("docker-compose.yml")).arg("config").current_dir(repo);
    // The defaults of the file, not whatever the caller has exported.
    for var in ["POSTGRES_PASSWORD", "RABBITMQ_USER", "RABBITMQ_PASSWORD"] {
        cmd.env_remove(var);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running docker-compose: {e}"),
    };
    assert!(out.status.success(), "docker-compose config failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Some(yaml_to_json(&out.stdout))
}

/// This docker-compose (1.x) prints YAML only; Debian's docker-compose depends on
/// python3-yaml, so the system python3 can convert it.
fn yaml_to_json(yaml: &[u8]) -> Value {
    let python = if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let mut child = Command::new(python)
        .args(["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(yaml).expect("yaml written");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "converting the YAML needs python3 with PyYAML (python3-yaml): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}

fn env_of(service: &Value) -> Map<String, Value> {
    match &service["environment"] {
        Value::Object(m) => m.clone(),
        // The list form `- KEY=value`.
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
        _ => Map::new(),
    }
}

fn env_str<'a>(env: &'a Map<String, Value>, key: &str) -> &'a str {
    env.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("{key} is not set: {env:?}"))
}

fn published_ports(service: &Value) -> Vec<String> {
    service["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p {
            Value::Object(o) => o["published"].to_string().trim_matches('"').to_string(),
            Value::String(s) => s.split(':').next().unwrap_or("").to_string(),
            other => other.to_string(),
        })
        .collect()
}

const DOMAINS: [(&str, &str, &str); 3] =
    [("item", "ITEM", "5001"), ("alarm", "ALARM", "6001"), ("user", "USER", "7001")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_file_gives_each_service_only_its_own_database_and_no_guest() {
    let Some(config) = resolved_config() else {
        e2e::skip("docker-compose is not installed");
        return;
    };
    let services = config["services"].as_object().expect("services");
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alarm", "alarm-db", "item", "item-db", "rabbitmq", "user", "user-db"]);
    assert!(config.get("volumes").is_none(), "no named volumes");

    for (name, service) in services {
        assert!(service.get("volumes").is_none(), "{name} mounts something: everything is baked into the images");
        let test = &service["healthcheck"]["test"];
        assert!(test.is_array() || test.is_string(), "{name} has a healthcheck: {service}");
        assert_ne!(service["healthcheck"]["disable"], true, "{name}");
    }

    // RabbitMQ: a user of our own, never guest, and the services log in with it.
    let rabbit = &services["rabbitmq"];
    let rabbit_env = env_of(rabbit);
    let rabbit_user = env_str(&rabbit_env, "RABBITMQ_DEFAULT_USER");
    let rabbit_pass = env_str(&rabbit_env, "RABBITMQ_DEFAULT_PASS");
    assert_ne!(rabbit_user, "guest");
    assert!(!rabbit_pass.is_empty() && rabbit_pass != "guest");
    assert!(published_ports(rabbit).contains(&"15672".to_string()));
    let whole = config.to_string();
    assert!(!whole.contains("guest:guest"), "guest appears in {whole}");

    for (domain, prefix, port) in DOMAINS {
        let service = &services[domain];
        let env = env_of(service);
        let db_vars: Vec<&String> = env.keys().filter(|k| k.ends_with("_DATABASE_URL")).collect();
        let own_var = format!("{prefix}_DATABASE_URL");
        assert_eq!(db_vars, [&own_var], "{domain} gets exactly its own database URL");
        let url = env_str(&env, &own_var);
        assert!(
            url.starts_with("postgres://") && url.ends_with(&format!("@{domain}-db:5432/{domain}_db")),
            "{domain}: {url}"
        );
        for (other, _, _) in DOMAINS.iter().filter(|(d, _, _)| *d != domain) {
            for (k, v) in &env {
                let v = v.as_str().unwrap_or_default();
                assert!(
                    !v.contains(&format!("{other}-db")) && !v.contains(&format!("{other}_db")),
                    "{domain}'s {k} names the {other} database: {v}"
                );
            }
        }
        let amqp = env_str(&env, "AMQP_URL");
        assert!(
            amqp.starts_with(&format!("amqp://{rabbit_user}:{rabbit_pass}@rabbitmq:5672/")),
            "{domain} uses the compose RabbitMQ user: {amqp}"
        );
        assert_eq!(env_str(&env, "HTTP_HOST"), "0.0.0.0");
        assert_eq!(env_str(&env, &format!("{prefix}_HTTP_PORT")), port);
        assert!(published_ports(service).contains(&port.to_string()), "{domain} publishes {port}");
        assert_eq!(service["build"]["args"]["SERVICE"], domain, "{domain} is built from the one Dockerfile");
        let db = &services[&format!("{domain}-db")];
        assert_eq!(db["build"]["args"]["DOMAIN"], domain);
        assert!(db["build"]["dockerfile"].as_str().is_some_and(|f| f.ends_with("postgres.Dockerfile")), "{db}");

        let deps = service["depends_on"]
            .as_object()
            .unwrap_or_else(|| panic!("{domain} depends_on with conditions: {service}"));
        let mut dep_names: Vec<&str> = deps.keys().map(String::as_str).collect();
        dep_names.sort_unstable();
        let own_db = format!("{domain}-db");
        let mut expected = vec![own_db.as_str(), "rabbitmq"];
        expected.sort_unstable();
        assert_eq!(dep_names, expected, "{domain} waits for its database and RabbitMQ only");
        for (dep, how) in deps {
            assert_eq!(how["condition"], "service_healthy", "{domain} waits until {dep} is healthy");
        }
    }
}
