"""Validates Kubernetes objects against the openAPIV3Schema of their CustomResourceDefinition.

usage: validate_crd.py --crd CRD.yaml [--crd …] OBJECTS.yaml [OBJECTS.yaml …]

Every document of the object files must be of a kind one of the CRDs defines (by group,
version and kind); it is validated with python-jsonschema against that version's schema,
strictly: an object schema that lists `properties` and neither `additionalProperties` nor
`x-kubernetes-preserve-unknown-fields` refuses other fields (the API server would silently
prune them, so a misspelt field must fail here). Kubernetes extensions (`x-kubernetes-*`,
CEL validations) are not evaluated. Prints JSON: {"validated": [...], "errors": [...]};
exit 1 when any document fails or has no CRD.
"""

import argparse
import copy
import json
import sys

import jsonschema
import yaml


def strict(schema):
    """A copy of `schema` that refuses unknown fields where the API server would prune them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--crd", action="append", required=True)
    parser.add_argument("objects", nargs="+")
    args = parser.parse_args()

    schemas = {}
    for path in args.crd:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = schema

    validated, errors = [], []
    for path in args.objects:
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if not doc:
                    continue
                key = (doc.get("apiVersion"), doc.get("kind"))
                name = f"{path}#{i + 1} {key[1]} {doc.get('metadata', {}).get('name')}"
                schema = schemas.get(key)
                if schema is None:
                    errors.append(f"{name}: no CRD for {key[0]} {key[1]}")
                    continue
                problems = sorted(
                    jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path)
                )
                if problems:
                    for p in problems:
                        errors.append(f"{name}: {'/'.join(map(str, p.path))}: {p.message}")
                else:
                    validated.append(name)
    json.dump({"validated": validated, "errors": errors}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
