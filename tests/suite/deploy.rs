//! The deployment files against the code: every metric the Grafana
//! dashboard and the alert rules query is one earlykill exports, and every
//! earlykill variable the Helm chart and the compose file set is one a
//! subcommand reads. (`.ci/deploy_checks.py` checks the same files with
//! Helm, kubernetes-validate, docker-compose and promtool.)

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use earlykill::telemetry;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Histograms are queried through their `_bucket`, `_sum` and `_count`.
const HISTOGRAMS: [&str; 3] = [
    telemetry::SESSION_DURATION,
    telemetry::ENGAGEMENT_AT_KILL,
    telemetry::EVALUATION_LATENCY,
];

/// Series that come from Prometheus or kube-state-metrics, not earlykill.
const EXTERNAL: [&str; 2] = ["up", "kube_pod_status_ready"];

/// PromQL words that are not metric names: operators, and aggregations
/// (which may come before their `by (...)` instead of before `(`).
const KEYWORDS: [&str; 18] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers outside label
/// matchers, ranges, strings and label lists, not followed by `(` (a
/// function or aggregation) and not a keyword or number.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_to = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        let mut quote = None;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(_) if c == '\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                None => {}
            }
            i += 1;
        }
        panic!("unbalanced {open}{close} in {expr:?}");
    };
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        (i, chars.get(i).copied())
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i, '{', '}');
        } else if c == '[' {
            i = skip_to(i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let (after, next) = next_non_space(i);
            if LABEL_LISTS.contains(&word.as_str()) {
                if next == Some('(') {
                    i = skip_to(after, '(', ')');
                }
            } else if next == Some('(') || KEYWORDS.contains(&word.as_str()) {
                // a function, an aggregation or an operator
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Names in `names` that earlykill does not export.
fn unknown(names: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    names
        .into_iter()
        .filter(|name| {
            let histogram_series = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| HISTOGRAMS.contains(&base))
            });
            !(telemetry::ALL.contains(&name.as_str())
                || histogram_series
                || EXTERNAL.contains(&name.as_str()))
        })
        .collect()
}

/// Every `expr` string anywhere in a JSON document.
fn json_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(s) if key == "expr" => out.push(s.clone()),
                    other => json_exprs(other, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

/// The `expr:` values of a Prometheus rule file: inline, or a `|` block of
/// the lines indented deeper than the key.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(value.to_owned());
        }
    }
    exprs
}

#[test]
fn the_metric_name_check_finds_names_and_can_fail() {
    let expr = r#"histogram_quantile(0.99, sum by (le, kind) (rate(performance_monitor_evaluation_latency_seconds_bucket{kind=~"killed|x"}[5m]))) > 0.25
        and on (instance) sum without (topic) (earlykill_consumer_lag_records offset 5m) > bool 1e3
        or earlykill_no_such_metric"#;
    assert_eq!(
        metric_names(expr),
        [
            "performance_monitor_evaluation_latency_seconds_bucket",
            "earlykill_consumer_lag_records",
            "earlykill_no_such_metric",
        ]
    );
    assert_eq!(
        unknown(metric_names(expr)),
        BTreeSet::from(["earlykill_no_such_metric".to_owned()])
    );
    assert_eq!(
        unknown(["earlykill_records_in_total_bucket".to_owned()]).len(),
        1,
        "only histograms have buckets"
    );
}

#[test]
fn the_dashboard_queries_only_metrics_earlykill_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("helm/earlykill/files/dashboard.json"))
            .expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    json_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 20,
        "the dashboard has its queries: {exprs:?}"
    );
    let names: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(names.len() >= exprs.len());
    assert_eq!(
        unknown(names.clone()),
        BTreeSet::new(),
        "unknown metrics in the dashboard"
    );
    // Every exported metric is on the dashboard somewhere.
    let shown: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let missing: Vec<&str> = telemetry::ALL
        .iter()
        .filter(|m| !shown.iter().any(|s| s.starts_with(**m)))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from the dashboard: {missing:?}"
    );
}

#[test]
fn the_alert_rules_query_only_metrics_earlykill_exports() {
    for path in [
        "helm/earlykill/files/alerts.yml",
        "helm/earlykill/templates/monitoring.yaml",
    ] {
        let exprs = rule_exprs(&read(path));
        assert!(!exprs.is_empty(), "{path} has rules");
        let names: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
        assert!(
            names.len() >= exprs.len(),
            "{path}: every rule selects a metric"
        );
        assert_eq!(unknown(names), BTreeSet::new(), "unknown metrics in {path}");
    }
}

/// Every environment variable some subcommand reads, from `--help`.
fn variables_read() -> BTreeSet<String> {
    let mut read = BTreeSet::from(["EARLYKILL_LOG_FORMAT".to_owned()]);
    for subcommand in ["run", "project", "generate", "migrate"] {
        let out = Command::new(env!("CARGO_BIN_EXE_earlykill"))
            .args([subcommand, "--help"])
            .output()
            .expect("earlykill runs");
        assert!(out.status.success(), "earlykill {subcommand} --help");
        let help = String::from_utf8(out.stdout).unwrap();
        for part in help.split("[env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            read.insert(name);
        }
    }
    read
}

/// The earlykill variables a deployment file sets: keys that start with
/// one of earlykill's prefixes (librdkafka pass-through excepted).
fn variables_set(text: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let ours = ["EARLYKILL_", "PERFORMANCE_MONITOR_", "DATABASE_URL"]
            .iter()
            .any(|p| word.starts_with(p));
        if ours
            && !word.starts_with("EARLYKILL_RDKAFKA_")
            && word != "EARLYKILL_IMAGE"
            && word != "EARLYKILL_PARTITIONS"
        {
            set.insert(word.to_owned());
        }
    }
    set
}

#[test]
fn the_deployment_files_set_only_variables_earlykill_reads() {
    let known = variables_read();
    assert!(known.contains("EARLYKILL_BOOTSTRAP_SERVERS") && known.contains("DATABASE_URL"));
    for path in [
        "docker-compose.kafka.yml",
        "Dockerfile",
        "helm/earlykill/templates/configmap.yaml",
        "helm/earlykill/templates/processor.yaml",
        "helm/earlykill/templates/projector.yaml",
        "helm/earlykill/templates/migrate-job.yaml",
        "helm/earlykill/templates/_helpers.tpl",
    ] {
        let set = variables_set(&read(path));
        assert!(!set.is_empty(), "{path} sets earlykill variables");
        let unread: Vec<&String> = set.difference(&known).collect();
        assert!(
            unread.is_empty(),
            "{path} sets variables no subcommand reads: {unread:?}"
        );
    }
}

/// Every `earlykill_*` or `performance_monitor_*` name in `text`.
fn named_metrics(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    for prefix in ["earlykill_", "performance_monitor_"] {
        for (at, _) in text.match_indices(prefix) {
            let word_start =
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            if !word_start {
                continue;
            }
            let end = text[at..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map_or(text.len(), |n| at + n);
            // `earlykill_*` names the prefix, not a metric.
            if !text[at..end].ends_with('_') {
                names.push(text[at..end].to_owned());
            }
        }
    }
    names
}

/// Names of that shape that are not metrics: the header naming a
/// decision's transaction.
const NOT_METRICS: [&str; 1] = ["earlykill_transaction"];

#[test]
fn every_metric_named_in_help_and_docs_exists() {
    let mut texts = Vec::new();
    for sub in [
        "run", "project", "replay", "migrate", "generate", "demo", "tail", "backtest",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_earlykill"))
            .args([sub, "--help"])
            .output()
            .expect("earlykill --help");
        assert!(out.status.success(), "{sub} --help");
        texts.push((
            format!("earlykill {sub} --help"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    let mut docs = vec![
        "README.md".to_owned(),
        "RELIABILITY.md".to_owned(),
        "BENCHMARKS.md".to_owned(),
    ];
    let mut dirs = vec![Path::new(ROOT).join("docs/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                let relative = path.strip_prefix(ROOT).unwrap();
                docs.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    for doc in docs {
        texts.push((doc.clone(), read(&doc)));
    }
    let mut checked = 0;
    for (source, text) in &texts {
        let names: Vec<String> = named_metrics(text)
            .into_iter()
            .filter(|n| !NOT_METRICS.contains(&n.as_str()))
            .collect();
        checked += names.len();
        assert_eq!(
            unknown(names),
            BTreeSet::new(),
            "{source} names metrics that do not exist"
        );
    }
    assert!(checked >= 20, "the docs name the metrics: {checked} found");
    // The check can fail: the name `run --help` once gave.
    assert_eq!(
        unknown(named_metrics("see earlykill_held_dropped_total.")),
        BTreeSet::from(["earlykill_held_dropped_total".to_owned()])
    );
}

#[test]
fn every_dashboard_query_follows_the_namespace_job_and_instance_variables() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("helm/earlykill/files/dashboard.json")).expect("JSON");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "job", "instance"]);
    let mut exprs = Vec::new();
    json_exprs(&dashboard, &mut exprs);
    for expr in &exprs {
        for name in metric_names(expr) {
            if EXTERNAL.contains(&name.as_str()) {
                continue;
            }
            // Each selection of an earlykill series carries the three.
            for (at, _) in expr.match_indices(&*name) {
                let selector = &expr[at + name.len()..];
                let labels = selector
                    .strip_prefix('{')
                    .and_then(|s| s.split_once('}'))
                    .map(|(labels, _)| labels)
                    .unwrap_or_default();
                for variable in ["$namespace", "$job", "$instance"] {
                    assert!(
                        labels.contains(variable),
                        "{expr}: {name} without {variable}"
                    );
                }
            }
        }
    }
    // Rates of records, decisions and commits are counts per second.
    let units: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["fieldConfig"]["defaults"]["unit"].as_str())
        .collect();
    assert!(!units.contains(&"reqps"), "{units:?}");
}
