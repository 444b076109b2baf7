#!/usr/bin/env python3
"""Checks of the deployment artifacts, run by .ci/run with real tools.

- the Helm chart: linted (strict) and rendered by the Helm engine of PyPI's
  helm-python-sdk with the default values and every file in
  helm/earlykill/ci/, each manifest validated against the Kubernetes schemas
  with kubernetes-validate (strict: unknown fields fail), the alert rules of
  a rendered PrometheusRule checked with promtool, and what each values
  file must produce asserted; invalid values must be refused by the schema;
- docker-compose.kafka.yml: `docker-compose config` and the compose
  specification's JSON schema shipped in Debian's docker-compose package,
  plus the start order the file promises;
- the Prometheus configuration and alert rules: `promtool check`;
- the Dockerfile: parsed, multi-stage, non-root, earlykill as entrypoint,
  every COPY source present.

The dashboard's and the rules' metric names are checked against the code's
by tests/suite/deploy.rs (part of the test suite). Exits non-zero on any failure.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "earlykill"
KUBE_VERSION = "1.30.0"
CRD_GROUP = "monitoring.coreos.com/v1"

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("  ok   " if ok else "  FAIL ") + what)
    if not ok:
        failures.append(what)


def documents(manifests: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in manifests.items():
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def find(docs: list[dict], kind: str, suffix: str = "") -> list[dict]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]


def env_of(workload: dict) -> dict[str, dict]:
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container.get("env", [])}


def promtool_rules(rules: dict, what: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    run = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    check(run.returncode == 0, f"promtool check rules: {what}" + ("" if run.returncode == 0 else "\n" + run.stdout + run.stderr))


def validate_kubernetes(docs: list[dict], label: str) -> None:
    for doc in docs:
        name = f"{label}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"] == CRD_GROUP:
            continue  # custom resources: checked on their own below
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            check(True, f"kubernetes-validate {name}")
        except kubernetes_validate.ValidationError as e:
            check(False, f"kubernetes-validate {name}: {e.message} at {list(e.path)}")
        except Exception as e:  # an unknown kind or version
            check(False, f"kubernetes-validate {name}: {e}")


def chart() -> None:
    print("== Helm chart (helm-python-sdk", helm_python.helm_sdk_version(), ")")
    loaded = helm_python.Chart.load(CHART)
    alert_file = yaml.safe_load((CHART / "files" / "alerts.yml").read_text())
    alert_names = {r["alert"] for g in alert_file["groups"] for r in g["rules"]}

    cases = {"default values": {}}
    for path in sorted((CHART / "ci").glob("*.yaml")):
        cases[path.name] = yaml.safe_load(path.read_text()) or {}

    rendered = {}
    for label, values in cases.items():
        report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        check(not problems, f"helm lint --strict ({label})" + ("" if not problems else f": {problems}"))
        try:
            docs = documents(loaded.render(values, name="ek", namespace="earlykill", is_install=True))
        except helm_python.HelmError as e:
            check(False, f"render ({label}): {e}")
            continue
        rendered[label] = docs
        validate_kubernetes(docs, label)
        for rule in find(docs, "PrometheusRule"):
            promtool_rules(rule["spec"], f"PrometheusRule ({label})")
            names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
            check(alert_names < names, f"PrometheusRule has every rule of files/alerts.yml and more ({label})")
        for monitor in find(docs, "ServiceMonitor"):
            endpoints = monitor["spec"]["endpoints"]
            check([e["path"] for e in endpoints] == ["/metrics"] and endpoints[0]["port"] == "http",
                  f"ServiceMonitor scrapes port http /metrics ({label})")

    # The KEDA ScaledObject: absent by default; when enabled, scaling the
    # processor StatefulSet on its group's lag, capped at the partitions.
    check(not find(rendered.get("default values", []), "ScaledObject"), "default: no ScaledObject")
    keda_values = {"processor": {"autoscaling": {"enabled": True, "maxReplicas": 12, "inputPartitions": 6}}}
    keda_docs = documents(loaded.render(keda_values, name="ek", namespace="earlykill", is_install=True))
    scaled = find(keda_docs, "ScaledObject", "-processor")
    check(len(scaled) == 1 and scaled[0]["apiVersion"] == "keda.sh/v1alpha1", "autoscaling: one KEDA ScaledObject")
    if scaled:
        spec = scaled[0]["spec"]
        trigger = spec["triggers"][0]
        check(spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "ek-earlykill-processor"}
              and spec["maxReplicaCount"] == 6 and spec["minReplicaCount"] == 2,
              f"autoscaling: targets the processor, replicas capped at the partitions: {spec}")
        check(trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == "earlykill"
              and trigger["metadata"]["allowIdleConsumers"] == "false",
              f"autoscaling: kafka lag of the processor's group, no idle consumers: {trigger}")

    # What the default values must give: the processor alone (no database),
    # with a stable instance id, probes on the right paths, and no custom
    # resources because the CRDs are absent.
    docs = rendered.get("default values", [])
    sts = find(docs, "StatefulSet", "-processor")
    check(len(sts) == 1, "default: one processor StatefulSet")
    if sts:
        env = env_of(sts[0])
        check(env.get("EARLYKILL_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
              "default: the instance id (and so the transactional id) is the pod name")
        container = sts[0]["spec"]["template"]["spec"]["containers"][0]
        check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "default: liveness on /healthz")
        check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "default: readiness on /readyz")
        check(container["args"] == ["run"], "default: the processor runs `earlykill run`")
        check(sts[0]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, "default: non-root")
        check(env.get("EARLYKILL_HTTP_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "EARLYKILL_HTTP_TOKEN",
              "default: the processor gets the API token from the chart's Secret")
    own = find(docs, "Secret", "-secret")
    check(len(own) == 1 and len(own[0]["stringData"].get("EARLYKILL_HTTP_TOKEN", "")) == 48,
          "default: the chart generates a 48-character API token when none is given")
    check(not find(docs, "Deployment") and not find(docs, "Job"), "default: no projector or migration without a database")
    check(not [d for d in docs if d["apiVersion"] == CRD_GROUP], "default: no ServiceMonitor/PrometheusRule without the CRDs")
    check(len(find(docs, "PodDisruptionBudget")) == 1, "default: a PodDisruptionBudget for the processor")
    check(len(find(docs, "ConfigMap", "-dashboard")) == 1, "default: the dashboard ConfigMap")
    dashboard = find(docs, "ConfigMap", "-dashboard")
    if dashboard:
        try:
            parsed = json.loads(dashboard[0]["data"]["earlykill.json"])
        except json.JSONDecodeError:
            parsed = None
        check(isinstance(parsed, dict) and bool(parsed.get("panels")),
              "default: the dashboard ConfigMap holds the dashboard's JSON")

    docs = rendered.get("full-values.yaml", [])
    check(len(find(docs, "Deployment", "-projector")) == 1, "full: the projector Deployment")
    jobs = find(docs, "Job", "-migrate")
    check(len(jobs) == 1 and "pre-install" in jobs[0]["metadata"]["annotations"]["helm.sh/hook"],
          "full: the migration Job is a pre-install hook")
    hook_secrets = [s for s in find(docs, "Secret") if "helm.sh/hook" in s["metadata"].get("annotations", {})]
    check(len(hook_secrets) == 1 and int(hook_secrets[0]["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0,
          "full: the Job's Secret is a hook that runs before it")
    check(len(find(docs, "ServiceMonitor")) == 1 and len(find(docs, "PrometheusRule")) == 1,
          "full: ServiceMonitor and PrometheusRule with skipCrdCheck")
    pages = {p.stem for p in (ROOT / "docs" / "src" / "operating" / "runbook").glob("*.md")}
    for rule_doc in find(docs, "PrometheusRule"):
        for group in rule_doc["spec"]["groups"]:
            for rule in group["rules"]:
                url = rule.get("annotations", {}).get("runbook_url", "")
                anchor = rule["alert"].lower()
                check(url == f"https://docs.example.com/earlykill/operating/runbook/{anchor}.html",
                      f"full: {rule['alert']} has its runbook_url ({url!r})")
                check(anchor in pages, f"the runbook has a page for {rule['alert']}")
    config = find(docs, "ConfigMap", "ek-earlykill")
    check(bool(config) and config[0]["data"].get("EARLYKILL_RDKAFKA_SECURITY_PROTOCOL") == "SASL_SSL",
          "full: kafka.properties become EARLYKILL_RDKAFKA_* variables")
    kafka_secret = find(docs, "Secret", "-secret-kafka")
    check(bool(kafka_secret) and "EARLYKILL_RDKAFKA_SASL_PASSWORD" in kafka_secret[0]["stringData"]
          and "EARLYKILL_RDKAFKA_SASL_PASSWORD" not in (config[0]["data"] if config else {}),
          "full: kafka.secretProperties go to a Secret, not the ConfigMap")
    monitored = [s for s in find(docs, "Service") if s["metadata"]["labels"].get("earlykill.io/metrics") == "true"]
    check(sorted(s["metadata"]["name"] for s in monitored) == ["ek-earlykill-processor", "ek-earlykill-projector"],
          "full: the ServiceMonitor selects the two non-headless Services only")

    docs = rendered.get("existing-secrets-values.yaml", [])
    check(not find(docs, "Secret"), "existing secrets: the chart creates no Secret")
    deployment = find(docs, "Deployment", "-projector")
    check(bool(deployment) and env_of(deployment[0])["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
          == {"name": "earlykill-database", "key": "url"}, "existing secrets: DATABASE_URL from the named Secret and key")
    check(not [d for d in docs if d["apiVersion"] == CRD_GROUP],
          "existing secrets: monitoring enabled but no CRDs, so nothing rendered")

    docs = rendered.get("seed-values.yaml", [])
    config = find(docs, "ConfigMap", "ek-earlykill")
    data = config[0]["data"] if config else {}
    check((data.get("PERFORMANCE_MONITOR_KILL_THRESHOLD"), data.get("PERFORMANCE_MONITOR_MIN_INTERACTIONS"),
           data.get("PERFORMANCE_MONITOR_TIMEOUT_MINUTES"), data.get("PERFORMANCE_MONITOR_LOG_LEVEL"))
          == ("0.4", "20", "15", "WARNING"), "seed values: performanceMonitor.* set the rule and the log level")
    sts = find(docs, "StatefulSet", "-processor")
    check(bool(sts) and sts[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m",
          "seed values: performanceMonitor.resources are the processor's")
    try:
        loaded.render({"performanceMonitor": {"enabled": False}}, name="ek", namespace="earlykill", is_install=True)
        check(False, "seed values: performanceMonitor.enabled: false is refused with how to translate it")
    except helm_python.HelmError as e:
        check("leave the chart out" in str(e), f"seed values: performanceMonitor.enabled: false is refused with how to translate it ({e})")

    # The schema must refuse what the processor would refuse at start-up.
    bad = {
        "guarantee": {"processor": {"guarantee": "maybe-once"}},
        "kill threshold above 1": {"rule": {"killThreshold": 1.5}},
        "timeout of 0 minutes": {"rule": {"timeoutMinutes": 0}},
        "empty bootstrap servers": {"kafka": {"bootstrapServers": ""}},
        "a misspelt key": {"processor": {"replica": 3}},
        "a database URL that is not PostgreSQL": {"database": {"url": "mysql://x"}},
    }
    for label, values in bad.items():
        refused = False
        try:
            loaded.validate_schema(values)
        except helm_python.HelmError:
            refused = True
        check(refused, f"values.schema.json refuses {label}")
    loaded.close()


def compose() -> None:
    print("== docker-compose.kafka.yml")
    path = ROOT / "docker-compose.kafka.yml"
    tokenless = {k: v for k, v in os.environ.items() if k != "EARLYKILL_HTTP_TOKEN"}
    run = subprocess.run(["docker-compose", "-f", str(path), "config", "-q"], capture_output=True, text=True, cwd=ROOT,
                         env=tokenless)
    check(run.returncode != 0 and "EARLYKILL_HTTP_TOKEN" in run.stderr,
          "docker-compose config refuses to run the processors without EARLYKILL_HTTP_TOKEN")
    run = subprocess.run(["docker-compose", "-f", str(path), "config", "-q"], capture_output=True, text=True, cwd=ROOT,
                         env={**tokenless, "EARLYKILL_HTTP_TOKEN": "ci-token"})
    check(run.returncode == 0, "docker-compose config" + ("" if run.returncode == 0 else ": " + run.stderr))
    spec = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
    document = yaml.safe_load(path.read_text())
    if spec.exists():
        errors = sorted(jsonschema.Draft7Validator(json.loads(spec.read_text())).iter_errors(document), key=str)
        check(not errors, f"compose specification schema ({spec})" + "".join(f"\n    {e.message} at {list(e.path)}" for e in errors))
    else:
        print(f"  (no compose specification schema at {spec}; skipped)")
    services = document["services"]
    expected = {"kafka", "kafka-init", "postgres", "migrate", "processor-1", "processor-2", "projector", "prometheus", "grafana"}
    check(expected <= services.keys(), f"compose: services {sorted(expected)}")

    def needs(service: str, dependency: str, condition: str) -> None:
        got = services.get(service, {}).get("depends_on", {}).get(dependency, {}).get("condition")
        check(got == condition, f"compose: {service} waits for {dependency} ({condition})")

    needs("kafka-init", "kafka", "service_healthy")
    needs("migrate", "postgres", "service_healthy")
    for s in ("processor-1", "processor-2", "projector"):
        needs(s, "kafka-init", "service_completed_successfully")
        needs(s, "migrate", "service_completed_successfully")
    ids = {services[s]["environment"].get("EARLYKILL_INSTANCE_ID") for s in ("processor-1", "processor-2")}
    check(len(ids) == 2 and None not in ids, "compose: each processor has its own instance id")
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":")[0]
        check((ROOT / source).exists(), f"compose: mounted file {source} exists")
    env = services["kafka"]["environment"]
    log_dirs = env.get("KAFKA_LOG_DIRS", "")
    mounts = [m.split(":")[1] for m in services["kafka"].get("volumes", [])]
    check(bool(log_dirs) and all(any(d == m or d.startswith(m + "/") for m in mounts) for d in log_dirs.split(",")),
          "compose: Kafka's KAFKA_LOG_DIRS are in its volume, so down/up keeps the topics")
    check("retention.ms=-1" in services["kafka-init"]["command"][0],
          "compose: the decisions topic is kept for ever (replayable)")
    check(env.get("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR") == "1" and env.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") == "1",
          "compose: one-node transaction log and offsets topic")


def prometheus() -> None:
    print("== Prometheus rules and configuration (promtool)")
    rules = CHART / "files" / "alerts.yml"
    run = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    check(run.returncode == 0, "promtool check rules helm/earlykill/files/alerts.yml" + ("" if run.returncode == 0 else "\n" + run.stdout + run.stderr))
    # The compose configuration names the rules at their mount point; check
    # it with the repository's file in that place.
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(rules, Path(tmp) / "alerts.yml")
        config["rule_files"] = [str(Path(tmp) / "alerts.yml")]
        (Path(tmp) / "prometheus.yml").write_text(yaml.safe_dump(config))
        run = subprocess.run(["promtool", "check", "config", str(Path(tmp) / "prometheus.yml")], capture_output=True, text=True)
        check(run.returncode == 0, "promtool check config deploy/prometheus/prometheus.yml" + ("" if run.returncode == 0 else "\n" + run.stdout + run.stderr))


def dockerfile() -> None:
    print("== Dockerfile")
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    stages = [i for i in parser.structure if i["instruction"] == "FROM"]
    check(len(stages) >= 2, "Dockerfile: multi-stage")
    last = parser.structure[[i for i, x in enumerate(parser.structure) if x["instruction"] == "FROM"][-1]:]
    users = [i["value"] for i in last if i["instruction"] == "USER"]
    check(bool(users) and users[-1].split(":")[0] not in ("root", "0"), "Dockerfile: the runtime stage runs as a non-root user")
    entry = [json.loads(i["value"]) for i in last if i["instruction"] == "ENTRYPOINT"]
    check(bool(entry) and entry[-1][0].endswith("/earlykill"), "Dockerfile: earlykill is the entrypoint")
    for i in parser.structure:
        if i["instruction"] == "COPY" and "--from=" not in i["value"]:
            for source in i["value"].split()[:-1]:
                check((ROOT / source).exists(), f"Dockerfile: COPY source {source} exists")
    # Every file the build embeds must be inside what the Dockerfile copies.
    copied = {s.rstrip("/") for i in parser.structure if i["instruction"] == "COPY" and "--from=" not in i["value"]
              for s in i["value"].split()[:-1]}
    embedded = set()
    for src in (ROOT / "src").rglob("*.rs"):
        for m in re.finditer(r'(?:embed_migrations!|include_str!\(concat!)\(\s*"(\.\./)*([a-z_]+)', src.read_text()):
            embedded.add(m.group(2))
    for top in sorted(embedded):
        check(top in copied or top == "sql", f"Dockerfile: copies {top}/, which the build embeds")
    build_stage(parser)


def build_stage(parser: DockerfileParser) -> None:
    """Plays the build stage without a docker engine: its WORKDIR, COPY and
    RUN steps in a scratch directory, each `cargo build` replaced by `cargo
    metadata` (which loads every manifest of the workspace, so a member the
    stage does not copy fails it) and `strip` skipped."""
    first_from = [i for i, x in enumerate(parser.structure) if x["instruction"] == "FROM"]
    steps = parser.structure[first_from[0] + 1:first_from[1]]
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        for step in steps:
            value = step["value"]
            if step["instruction"] == "WORKDIR":
                workdir = Path(scratch) / value.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif step["instruction"] == "COPY":
                *sources, dest = value.split()
                target = workdir / dest
                for source in sources:
                    origin = ROOT / source
                    into = target / origin.name if dest.endswith("/") or len(sources) > 1 else target
                    if origin.is_dir():
                        shutil.copytree(origin, into, dirs_exist_ok=True)
                    else:
                        into.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(origin, into)
            elif step["instruction"] == "RUN":
                command = re.sub(r"cargo build[^;&\\]*",
                                 "cargo metadata --locked --offline --format-version 1 --no-deps >/dev/null ",
                                 value)
                command = command.replace("strip target/release/earlykill", "true")
                run = subprocess.run(["sh", "-c", command], cwd=workdir, capture_output=True, text=True)
                check(run.returncode == 0,
                      f"Dockerfile: the build stage's RUN works on what it copied ({value[:60]}...)"
                      + ("" if run.returncode == 0 else "\n" + run.stdout + run.stderr))


def main() -> int:
    chart()
    compose()
    prometheus()
    dockerfile()
    if failures:
        print(f"\n{len(failures)} deployment check(s) failed:", *failures, sep="\n  - ")
        return 1
    print("\nall deployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
