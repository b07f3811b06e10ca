#!/usr/bin/env python3
"""Offline checks of rendered Kubernetes manifests (`helm template` output), for tests/deploy.

    check-rendered.py validate --k8s-version 1.34.0 --schemas deploy/schemas RENDERED.yaml
    check-rendered.py facts RENDERED.yaml
    check-rendered.py compose-facts deploy/compose.yaml

`validate` checks every object: core kinds against the Kubernetes JSON schemas that the
kubernetes-validate package ships (pinned version, strict: unknown fields are errors), the
operators' custom resources against the openAPIV3Schema of their CRDs vendored under
deploy/schemas/. A kind that neither knows is an error, so nothing passes unchecked. It
prints one JSON object: counts per kind, and the errors.

`facts` prints what tests/deploy holds against the code: per service Deployment its
`faultline` arguments, container ports, probe paths and environment variable names; the
KafkaTopics with partitions; the KafkaUsers' topic ACLs; and each Job's arguments.

`compose-facts` prints, per compose service run from the faultline image, its command and
the names of its environment variables.

Run with the Python of the validators' venv (scripts/setup makes it).
"""
import argparse
import glob
import json
import os
import sys

import yaml


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def crd_validators(schema_dir):
    """(apiVersion, kind) -> a jsonschema validator of that CRD version's openAPIV3Schema."""
    import jsonschema

    validators = {}
    for path in glob.glob(os.path.join(schema_dir, "**", "*.yaml"), recursive=True):
        for crd in documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def validate(args):
    import kubernetes_validate

    crds = crd_validators(args.schemas)
    counts, errors = {}, []
    for obj in documents(args.rendered):
        key = (obj.get("apiVersion"), obj.get("kind"))
        name = f"{key[1]}/{obj.get('metadata', {}).get('name')}"
        counts[key[1]] = counts.get(key[1], 0) + 1
        if key in crds:
            for error in crds[key].iter_errors(obj):
                where = "/".join(str(p) for p in error.absolute_path)
                errors.append(f"{name}: {where}: {error.message}")
            continue
        group = key[0].split("/")[0] if "/" in key[0] else ""
        # Kubernetes' own groups are "" (v1), one word (apps, batch) or *.k8s.io.
        if "." in group and not group.endswith(".k8s.io"):
            errors.append(f"{name}: no schema for {key[0]} {key[1]} (vendor its CRD under {args.schemas})")
            continue
        try:
            kubernetes_validate.validate(obj, args.k8s_version, strict=True)
        except Exception as error:  # ValidationError, SchemaNotFoundError, ...
            errors.append(f"{name}: {type(error).__name__}: {getattr(error, 'message', error)}")
    print(json.dumps({"objects": sum(counts.values()), "kinds": counts, "errors": errors}))


def facts(args):
    services, topics, users, jobs = {}, {}, {}, {}
    for obj in documents(args.rendered):
        kind, spec = obj.get("kind"), obj.get("spec", {})
        if kind == "Job":
            jobs[obj["metadata"]["name"]] = spec["template"]["spec"]["containers"][0].get("args") or []
        if kind == "Deployment":
            for c in spec["template"]["spec"]["containers"]:
                services[c["name"]] = {
                    "args": (c.get("args") or []),
                    "ports": [p["containerPort"] for p in (c.get("ports") or [])],
                    "probes": sorted(
                        {c[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe", "startupProbe") if p in c}
                    ),
                    "env": [e["name"] for e in (c.get("env") or [])],
                    "env_values": [e.get("value", "") for e in (c.get("env") or [])],
                    "grace": spec["template"]["spec"].get("terminationGracePeriodSeconds"),
                }
        elif kind == "ConfigMap":
            for name in obj.get("data", {}):
                topics.setdefault("__configmap__", []).append(name)
        elif kind == "KafkaTopic":
            topics[spec["topicName"]] = spec["partitions"]
        elif kind == "KafkaUser":
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            users[component] = sorted(
                {a["resource"]["name"] for a in spec["authorization"]["acls"] if a["resource"]["type"] == "topic"}
            )
    configmap = topics.pop("__configmap__", [])
    print(json.dumps({"services": services, "configmap": configmap, "topics": topics, "kafka_users": users, "jobs": jobs}))


def compose_facts(args):
    with open(args.compose, encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    services = {
        name: {"command": service.get("command", []), "env": sorted(service.get("environment", {}))}
        for name, service in compose["services"].items()
        if "FAULTLINE_IMAGE" in service.get("image", "")
    }
    print(json.dumps({"services": services}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    v = commands.add_parser("validate")
    v.add_argument("--k8s-version", required=True)
    v.add_argument("--schemas", required=True)
    v.add_argument("rendered")
    f = commands.add_parser("facts")
    f.add_argument("rendered")
    c = commands.add_parser("compose-facts")
    c.add_argument("compose")
    args = parser.parse_args()
    {"validate": validate, "facts": facts, "compose-facts": compose_facts}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
