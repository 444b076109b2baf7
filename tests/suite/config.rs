//! Layered configuration: defaults, file, environment, flags, and errors
//! that name the key.

use std::io::Write;

use clap::Parser;
use earlykill::config::{ConfigError, Settings};
use earlykill::processor::Guarantee;

/// The flags and environment layer, as `earlykill run` parses it.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    settings: Settings,
}

fn flags(args: &[&str]) -> Settings {
    Flags::try_parse_from(std::iter::once("earlykill").chain(args.iter().copied()))
        .expect("flags parse")
        .settings
}

fn file(text: &str) -> Settings {
    let mut f = tempfile();
    f.1.write_all(text.as_bytes()).expect("write");
    Settings::from_file(&f.0).expect("file parses")
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "earlykill-config-{}-{}.toml",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    ));
    let f = std::fs::File::create(&path).expect("create");
    (path, f)
}

#[test]
fn defaults_follow_the_rule_and_the_documented_topic_names() {
    let config = Settings::default().resolve().expect("defaults are valid");
    assert_eq!(config.monitor.defaults.kill_threshold, 0.5);
    assert_eq!(config.monitor.defaults.min_interactions, 10);
    assert_eq!(config.monitor.defaults.timeout_minutes, 10);
    assert_eq!(config.guarantee, Guarantee::ExactlyOnce);
    assert_eq!(config.commit_interval.as_millis(), 100);
    assert_eq!(config.topics.posted, "earlykill.posted");
    assert_eq!(config.topics.changelog, "earlykill.changelog");
}

#[test]
fn flags_override_the_file_which_overrides_the_defaults() {
    let from_file = file(
        r#"
kill-threshold = 0.4
min-interactions = 20
group-id = "from-file"

[kafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"#,
    );
    let from_flags = flags(&[
        "--kill-threshold",
        "0.3",
        "-X",
        "sasl.mechanism=PLAIN",
        "--guarantee",
        "at-least-once",
    ]);
    let config = from_flags.or(from_file).resolve().expect("valid");
    assert_eq!(config.monitor.defaults.kill_threshold, 0.3, "flag wins");
    assert_eq!(config.monitor.defaults.min_interactions, 20, "file kept");
    assert_eq!(config.monitor.defaults.timeout_minutes, 10, "default kept");
    assert_eq!(config.group_id, "from-file");
    assert_eq!(config.guarantee, Guarantee::AtLeastOnce);
    assert_eq!(config.kafka["security.protocol"], "SASL_SSL");
    assert_eq!(
        config.kafka["sasl.mechanism"], "PLAIN",
        "flag property wins"
    );
}

#[test]
fn rdkafka_environment_variables_become_properties() {
    let env = Settings::from_env_properties([
        (
            "EARLYKILL_RDKAFKA_SASL_PASSWORD".to_owned(),
            "secret".to_owned(),
        ),
        ("PATH".to_owned(), "/bin".to_owned()),
    ]);
    let config = env.resolve().expect("valid");
    assert_eq!(config.kafka.len(), 1);
    assert_eq!(config.kafka["sasl.password"], "secret");
}

#[test]
fn an_out_of_range_value_names_its_key_and_the_fix() {
    let error = flags(&["--kill-threshold", "1.5"])
        .resolve()
        .expect_err("1.5 is not a fraction");
    let message = error.to_string();
    assert!(message.contains("`kill-threshold`"), "{message}");
    assert!(message.contains("0.5"), "says what to set: {message}");
    for (args, key) in [
        (&["--min-interactions", "0"][..], "`min-interactions`"),
        (&["--timeout-minutes", "0"][..], "`timeout-minutes`"),
        (&["--commit-interval-ms", "0"][..], "`commit-interval-ms`"),
        (&["--max-sessions", "16777217"][..], "`max-sessions`"),
        (
            &["--decisions-topic", "earlykill.posted"][..],
            "`decisions-topic`",
        ),
    ] {
        let message = flags(args).resolve().expect_err("invalid").to_string();
        assert!(message.contains(key), "{args:?}: {message}");
    }
}

#[test]
fn a_property_earlykill_manages_is_refused_with_what_to_set_instead() {
    let error = flags(&["-X", "transactional.id=mine"])
        .resolve()
        .expect_err("reserved");
    assert!(matches!(error, ConfigError::ReservedProperty { .. }));
    assert!(error.to_string().contains("instance-id"), "{error}");
}

#[test]
fn an_unknown_file_key_is_an_error_naming_it() {
    let (path, mut f) = tempfile();
    f.write_all(b"kill-treshold = 0.4\n").expect("write");
    let error = Settings::from_file(&path).expect_err("typo");
    let message = error.to_string();
    assert!(message.contains("kill-treshold"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("did you mean `kill-threshold`?"),
        "{message}"
    );
    // Nothing close: no guess.
    let (path, mut f) = tempfile();
    f.write_all(b"colour = 1\n").expect("write");
    let message = Settings::from_file(&path).expect_err("unknown").to_string();
    assert!(
        message.contains("`colour`") && !message.contains("did you mean"),
        "{message}"
    );
}

#[test]
fn the_http_listener_is_loopback_by_default_off_on_request_and_checked() {
    let config = Settings::default().resolve().expect("defaults");
    assert_eq!(config.http_listen, Some("127.0.0.1:8080".parse().unwrap()));
    let off = flags(&["--http-listen", "off"]).resolve().expect("off");
    assert_eq!(off.http_listen, None);
    let all = flags(&["--http-listen", "0.0.0.0:9000", "--http-token", "t0k"])
        .resolve()
        .expect("all");
    assert_eq!(all.http_listen, Some("0.0.0.0:9000".parse().unwrap()));
    match flags(&["--http-listen", "localhost"]).resolve() {
        Err(ConfigError::Invalid { key, fix, .. }) => {
            assert_eq!(key, "http-listen");
            assert!(fix.contains("0.0.0.0:8080"), "{fix}");
        }
        other => panic!("expected an error naming http-listen, got {other:?}"),
    }
}

#[test]
fn the_token_and_the_database_url_never_appear_in_debug_output() {
    let config = flags(&[
        "--http-token",
        "tok-9f8e7d",
        "--database-url",
        "postgresql://u:pw-1a2b3c@db/x",
    ])
    .resolve()
    .expect("valid");
    assert_eq!(config.http_token.as_ref().unwrap().expose(), "tok-9f8e7d");
    let shown = format!("{config:?}");
    assert!(!shown.contains("tok-9f8e7d"), "{shown}");
    assert!(!shown.contains("pw-1a2b3c"), "{shown}");
}

#[test]
fn a_listener_beyond_loopback_without_a_token_is_refused_with_how_to_set_one() {
    for listen in ["0.0.0.0:8080", "10.1.2.3:8080", "[::]:8080"] {
        match flags(&["--http-listen", listen]).resolve() {
            Err(ConfigError::Invalid { key, fix, .. }) => {
                assert_eq!(key, "http-token");
                assert!(fix.contains("EARLYKILL_HTTP_TOKEN"), "{fix}");
            }
            other => panic!("{listen}: expected an error naming http-token, got {other:?}"),
        }
    }
    for listen in ["127.0.0.1:8080", "[::1]:8080"] {
        flags(&["--http-listen", listen])
            .resolve()
            .unwrap_or_else(|e| panic!("{listen} needs no token: {e}"));
    }
}

#[test]
fn kafka_passwords_from_the_file_never_appear_in_debug_output() {
    let settings = file(
        r#"
[kafka]
"sasl.username" = "svc-user"
"sasl.password" = "pw-77aa66"
"ssl.key.password" = "kp-55cc44"
# OIDC's client secret needs the `oidc` build (refused at start
# otherwise); the unsecured JWT configuration is a secret of every build.
"sasl.oauthbearer.config" = "principal=cs-33ee22"
"#,
    )
    .or(flags(&["-X", "ssl.keystore.password=ks-11ff00"]));
    let shown = format!("{settings:?}");
    let config = settings.resolve().expect("valid");
    let resolved = format!("{config:?}");
    for secret in ["pw-77aa66", "kp-55cc44", "cs-33ee22", "ks-11ff00"] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!resolved.contains(secret), "{resolved}");
    }
    assert!(resolved.contains("svc-user"), "{resolved}");
    assert_eq!(config.kafka["sasl.password"], "pw-77aa66");
}

#[test]
fn help_never_prints_the_database_url_from_the_environment() {
    for command in ["migrate", "project", "replay", "run", "demo"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"))
            .args([command, "--help"])
            .env("DATABASE_URL", "postgresql://u:pw-9d8c7b@db/x")
            .env("EARLYKILL_HTTP_TOKEN", "tok-6e5f4a")
            .output()
            .expect("run earlykill");
        assert!(output.status.success(), "{command} --help failed");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(!help.contains("pw-9d8c7b"), "{command} --help: {help}");
        assert!(!help.contains("tok-6e5f4a"), "{command} --help: {help}");
    }
}

#[test]
fn the_seeds_log_level_names_are_understood_and_an_unknown_one_refused() {
    let warning = flags(&[]).or(file("log-level = \"WARNING\"\n")).resolve();
    assert_eq!(
        warning.expect("WARNING is a level").log_level,
        "warn,earlykill::audit=info"
    );
    match file("log-level = \"LOUD\"\n").resolve() {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "log-level"),
        other => panic!("expected an error naming log-level, got {other:?}"),
    }
}

#[test]
fn hold_per_variant_must_fit_the_producers_message_size() {
    match flags(&["--hold-per-variant", "100000"]).resolve() {
        Err(ConfigError::Invalid { key, problem, .. }) => {
            assert_eq!(key, "hold-per-variant");
            assert!(problem.contains("message.max.bytes"), "{problem}");
        }
        other => panic!("expected an error naming hold-per-variant, got {other:?}"),
    }
    let larger = flags(&[
        "--hold-per-variant",
        "10000",
        "-X",
        "message.max.bytes=4000000",
    ])
    .resolve()
    .expect("fits a 4 MB message");
    assert_eq!(larger.monitor.hold_per_variant, 10_000);
}

#[test]
fn registry_framed_decisions_need_a_registry_and_say_so() {
    let message = flags(&["--decisions-format", "registry"])
        .resolve()
        .expect_err("no registry to register with")
        .to_string();
    assert!(message.contains("`decisions-format`"), "{message}");
    assert!(message.contains("schema-registry-url"), "{message}");
    let config = flags(&[
        "--decisions-format",
        "registry",
        "--schema-registry-url",
        "http://registry:8081",
    ])
    .resolve()
    .expect("valid");
    assert_eq!(
        config.decisions_format,
        earlykill::processor::DecisionsFormat::Registry
    );
    let config = file("decisions-format = \"single-object\"\n")
        .resolve()
        .expect("valid");
    assert_eq!(
        config.decisions_format,
        earlykill::processor::DecisionsFormat::SingleObject
    );
}

/// The projector's settings from `text` as its file, under `args` as flags.
fn projector(args: &[&str], text: &str) -> earlykill::config::projector::ProjectorSettings {
    use earlykill::config::projector::ProjectorSettings;
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: ProjectorSettings,
    }
    let (path, mut f) = tempfile();
    f.write_all(text.as_bytes()).expect("write");
    let flags = Flags::try_parse_from(std::iter::once("project").chain(args.iter().copied()))
        .expect("flags parse")
        .settings;
    flags.or(ProjectorSettings::from_file(&path).expect("file parses"))
}

#[test]
fn the_projector_is_layered_like_the_processor() {
    let resolved = projector(
        &["--batch-size", "250", "-X", "fetch.max.bytes=1000"],
        r#"
database-url = "postgresql://u:pw-4f4f@db/x"
batch-size = 9000
pool-size = 8
[kafka]
"fetch.max.bytes" = 5000
"client.id" = "projector-a"
"#,
    )
    .resolve()
    .expect("valid");
    let config = resolved.config;
    assert_eq!(config.batch_size, 250, "flag wins");
    assert_eq!(config.pool_size, 8, "file kept");
    assert_eq!(config.group_id, "earlykill-projector", "default kept");
    assert_eq!(config.database_url, "postgresql://u:pw-4f4f@db/x");
    assert_eq!(
        config.kafka["fetch.max.bytes"], "1000",
        "flag property wins"
    );
    assert_eq!(config.kafka["client.id"], "projector-a");
    assert_eq!(
        resolved.http_listen,
        Some("127.0.0.1:8081".parse().unwrap())
    );
}

#[test]
fn the_shadow_projector_reads_the_shadow_topic_in_a_group_of_its_own() {
    let file = r#"database-url = "postgresql://u@db/x""#;
    let live = projector(&[], file).resolve().expect("valid").config;
    assert_eq!(live.table, earlykill::projector::Table::Live);
    let shadow = projector(&["--shadow"], file)
        .resolve()
        .expect("valid")
        .config;
    assert_eq!(shadow.table, earlykill::projector::Table::Shadow);
    assert_eq!(shadow.decisions_topic, "earlykill.shadow-decisions");
    assert_eq!(shadow.group_id, "earlykill-projector-shadow");
    let named = projector(
        &["--shadow", "--shadow-decisions-topic", "exp.shadow"],
        file,
    )
    .resolve()
    .expect("valid")
    .config;
    assert_eq!(named.decisions_topic, "exp.shadow");
}

#[test]
fn shadow_policies_and_the_share_come_from_the_file_and_flags_replace_them() {
    let from_file = file(
        r#"
shadow-policy = ["candidate:kill-threshold=0.4", "slow:timeout-minutes=20"]
holdout-share = 0.1
"#,
    );
    let config = from_file.clone().resolve().expect("valid");
    let names: Vec<&str> = config
        .shadow_policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["candidate", "slow"]);
    assert_eq!(config.shadow_policies[1].timeout_minutes, Some(20));
    assert_eq!(
        config.monitor.holdout,
        earlykill_core::monitor::Holdout::Spare {
            parts_per_million: 100_000
        }
    );
    // The flags' list replaces the file's, as any other setting.
    let flagged = flags(&["--shadow-policy", "only:"])
        .or(from_file)
        .resolve()
        .expect("valid");
    assert_eq!(flagged.shadow_policies.len(), 1);
    let mut f = tempfile();
    f.1.write_all(br#"shadow-policy = ["no-colon"]"#)
        .expect("write");
    let Err(bad) = Settings::from_file(&f.0) else {
        panic!("a policy without a colon is refused")
    };
    let bad = bad.to_string();
    assert!(bad.contains("NAME:key=value"), "{bad}");
}

#[test]
fn a_processor_refuses_a_bad_shadow_policy_or_share_naming_the_key() {
    let err = |args: &[&str]| {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            settings: earlykill::config::Settings,
        }
        match Flags::try_parse_from(std::iter::once("run").chain(args.iter().copied())) {
            Err(e) => e.to_string(),
            Ok(flags) => flags.settings.resolve().expect_err("refused").to_string(),
        }
    };
    let holdout = err(&["--holdout-share", "0.7"]);
    assert!(
        holdout.contains("holdout-share") && holdout.contains("0..=0.5"),
        "{holdout}"
    );
    let typo = err(&["--shadow-policy", "c:kill-treshold=0.4"]);
    assert!(typo.contains("unknown key \"kill-treshold\""), "{typo}");
    let twice = err(&[
        "--shadow-policy",
        "c:",
        "--shadow-policy",
        "c:kill-threshold=0.2",
    ]);
    assert!(
        twice.contains("shadow-policy") && twice.contains("twice"),
        "{twice}"
    );
    let topic = err(&[
        "--shadow-policy",
        "c:",
        "--shadow-decisions-topic",
        "earlykill.decisions",
    ]);
    assert!(topic.contains("shadow-decisions-topic"), "{topic}");
}

#[test]
fn a_projector_setting_out_of_range_or_missing_names_its_key() {
    use earlykill::config::projector::ProjectorSettings;
    let message = ProjectorSettings::default()
        .resolve()
        .expect_err("no database")
        .to_string();
    assert!(message.contains("`database-url`"), "{message}");
    assert!(
        message.contains("DATABASE_URL"),
        "says how to set it: {message}"
    );
    for (args, key) in [
        (&["--batch-size", "0"][..], "`batch-size`"),
        (&["--pool-size", "65"][..], "`pool-size`"),
        (&["--retry-max-ms", "5"][..], "`retry-max-ms`"),
        (&["--http-listen", "nowhere"][..], "`http-listen`"),
    ] {
        let message = projector(args, "database-url = \"postgresql://db/x\"\n")
            .resolve()
            .expect_err("invalid")
            .to_string();
        assert!(message.contains(key), "{args:?}: {message}");
    }
    let message = projector(
        &["-X", "group.id=mine"],
        "database-url = \"postgresql://db/x\"\n",
    )
    .resolve()
    .expect_err("reserved")
    .to_string();
    assert!(message.contains("group-id"), "{message}");
}

#[test]
fn the_generators_file_holds_its_own_and_the_traffic_keys_and_nothing_else() {
    use earlykill::config::tools::{GenerateSettings, TrafficSettings};
    let (path, mut f) = tempfile();
    f.write_all(b"seed = 7\nposted-topic = \"p\"\nspeedup = 0\n[kafka]\n\"linger.ms\" = 5\n")
        .expect("write");
    let traffic = TrafficSettings {
        poor_fraction: Some(0.5),
        ..TrafficSettings::default()
    };
    let (config, _) = GenerateSettings::default()
        .load(traffic, Some(&path))
        .expect("valid");
    assert_eq!(config.traffic.seed, 7, "a traffic key from the file");
    assert_eq!(config.traffic.poor_fraction, 0.5, "the flag");
    assert_eq!(config.traffic.stop_fraction, 0.02, "the default");
    assert_eq!(config.topics.posted, "p");
    assert_eq!(config.topics.interactions, "earlykill.interactions");
    assert_eq!(config.speedup, 0.0);
    assert_eq!(
        config.kafka["linger.ms"], "5",
        "a number in [kafka] is text"
    );

    let (path, mut f) = tempfile();
    f.write_all(b"seed = 7\nkill-threshold = 0.4\n")
        .expect("write");
    let message = GenerateSettings::default()
        .load(TrafficSettings::default(), Some(&path))
        .expect_err("a processor key")
        .to_string();
    assert!(message.contains("`kill-threshold`"), "{message}");

    let message = GenerateSettings::default()
        .load(
            TrafficSettings {
                stop_fraction: Some(1.5),
                ..TrafficSettings::default()
            },
            None,
        )
        .expect_err("not a fraction")
        .to_string();
    assert!(message.contains("`stop-fraction`"), "{message}");
}

#[test]
fn every_subcommands_help_shows_its_defaults() {
    for (command, shown) in [
        ("run", "[default: 100]"),
        ("project", "[default: 5000]"),
        ("replay", "[default: earlykill.decisions]"),
        ("generate", "[default: earlykill.posted]"),
        ("tail", "[default: localhost:9092]"),
        ("demo", "[default: 127.0.0.1:8080]"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"))
            .args([command, "--help"])
            .output()
            .expect("run earlykill");
        assert!(output.status.success(), "{command} --help failed");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains(shown), "{command} --help: {help}");
    }
}

/// The components own their defaults; the layered configuration with
/// nothing set resolves to exactly them.
#[test]
fn nothing_set_resolves_to_the_components_own_defaults() {
    let resolved = Settings {
        bootstrap_servers: Some("broker:9092".into()),
        ..Settings::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(
        format!("{resolved:?}"),
        format!(
            "{:?}",
            earlykill::processor::ProcessorConfig::with_bootstrap("broker:9092")
        )
    );
    let projector = earlykill::config::projector::ProjectorSettings {
        bootstrap_servers: Some("broker:9092".into()),
        database_url: Some("postgres://db/x".into()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(
        format!("{:?}", projector.config),
        format!(
            "{:?}",
            earlykill::projector::ProjectorConfig::new("broker:9092", "postgres://db/x")
        )
    );
}

/// A bad value from an environment variable names the variable, not only
/// the key: the user set the variable.
#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"));
        command.args(["run", "--http-listen", "off"]);
        command.env_remove("PERFORMANCE_MONITOR_KILL_THRESHOLD");
        if let Some(value) = env {
            command.env("PERFORMANCE_MONITOR_KILL_THRESHOLD", value);
        }
        if let Some(value) = flag {
            command.args(["--kill-threshold", value]);
        }
        let out = command.output().expect("earlykill runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let from_env = run(Some("2"), None);
    assert!(
        from_env.contains("kill-threshold")
            && from_env.contains("environment variable PERFORMANCE_MONITOR_KILL_THRESHOLD"),
        "{from_env}"
    );
    let from_flag = run(None, Some("2"));
    assert!(from_flag.contains("kill-threshold"), "{from_flag}");
    assert!(!from_flag.contains("environment variable"), "{from_flag}");
}

/// An unknown librdkafka property, or a bad value, is refused when the
/// configuration resolves, before any client or listener starts.
#[test]
fn an_unknown_kafka_property_or_a_bad_value_is_refused_at_start() {
    for (key, value, says) in [
        ("no.such.property", "1", "No such configuration property"),
        ("linger.ms", "abc", "Invalid value"),
    ] {
        let error = Settings {
            kafka: Some(vec![earlykill::config::Property(key.into(), value.into())]),
            ..Settings::default()
        }
        .resolve()
        .expect_err("refused")
        .to_string();
        assert!(
            error.contains("kafka-property") && error.contains(key) && error.contains(says),
            "{error}"
        );
    }
    // A known property with a good value is taken.
    Settings {
        kafka: Some(vec![earlykill::config::Property(
            "linger.ms".into(),
            "5".into(),
        )]),
        ..Settings::default()
    }
    .resolve()
    .expect("linger.ms = 5 is fine");
}

/// A refused secret property never shows its value (OIDC's client secret
/// is refused by a build without the `oidc` feature).
#[cfg(not(feature = "oidc"))]
#[test]
fn a_refused_secret_property_keeps_its_value_hidden() {
    let error = Settings {
        kafka: Some(vec![earlykill::config::Property(
            "sasl.oauthbearer.client.secret".into(),
            "cs-99dd88".into(),
        )]),
        ..Settings::default()
    }
    .resolve()
    .expect_err("not supported in this build")
    .to_string();
    assert!(!error.contains("cs-99dd88"), "{error}");
    assert!(
        error.contains("sasl.oauthbearer.client.secret") && error.contains("***"),
        "{error}"
    );
}

/// An unreachable broker is one error naming the address and the setting,
/// within the Kafka timeout, for `run` (through the members topic, the
/// first thing it asks) and `tail`.
#[test]
fn an_unreachable_broker_is_one_error_naming_the_address_and_the_setting() {
    for args in [
        &["run", "--http-listen", "127.0.0.1:0"][..],
        &["run", "--http-listen", "off"][..],
        &["tail", "earlykill.decisions"][..],
    ] {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"))
            .args(args)
            .args([
                "--bootstrap-servers",
                "127.0.0.1:1",
                "--kafka-timeout-seconds",
                "2",
            ])
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("earlykill runs");
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no Kafka broker answered at 127.0.0.1:1")
                && stderr.contains("`bootstrap-servers`"),
            "{args:?}: {stderr}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{args:?} took {:?}",
            started.elapsed()
        );
        // librdkafka's own lines: each at most once per quiet period, and
        // without the source paths of the `log` facade's records.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines = stdout.lines().count();
        assert!(lines <= 40, "{args:?}: {lines} log lines:\n{stdout}");
        assert!(
            !stdout.contains("log.file") && !stdout.contains(".cargo/registry"),
            "{args:?}: {stdout}"
        );
    }
}

#[test]
fn migrate_against_a_closed_port_names_the_host_and_port_but_not_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgresql://someone:pw-5e5e@127.0.0.1:{port}/db?sslmode=disable");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["migrate", "--database-url", &url])
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run earlykill migrate");
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("database-url"), "{message}");
    assert!(!message.contains("pw-5e5e"), "{message}");
}
