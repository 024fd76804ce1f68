# SPDX-License-Identifier: Apache-2.0
"""Offline tests of the Kybernate CustomResourceDefinitions.

Run with Debian's interpreter (python3-pytest, python3-jsonschema 4.10,
python3-yaml):

    /usr/bin/python3 -m pytest -q tests/unit/crds

What is checked, without an API server:

* each CRD under deploy/crds/ is a well-formed apiextensions.k8s.io/v1 CRD
  that kube-apiserver 1.20 accepts: a structural schema (the rules of
  k8s.io/apiextensions-apiserver/pkg/apiserver/schema), only the
  JSONSchemaProps keywords v1 allows, no CEL, metadata restricted to nothing,
  printer columns that point at schema fields, valid defaults;
* the shared fragments (options, storage, conditions, ...) are identical
  across the CRDs;
* every example under deploy/examples/ validates, strictly (no unknown
  fields) and as the API server would see it;
* every object under tests/unit/crds/invalid/ is rejected, with an error
  that contains each of its `# expect:` lines. Errors are rendered the way
  kube-apiserver 1.20 words them (go-openapi messages wrapped in
  field.Error), so the same expectations hold against a real API server;
* the server-side defaulting of a minimal object gives the documented
  defaults.
"""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CRD_DIR = ROOT / "deploy" / "crds"
EXAMPLES_DIR = ROOT / "deploy" / "examples"
INVALID_DIR = HERE / "invalid"
DOCS = ROOT / "docs" / "crds.md"

GROUP = "kybernate.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

KINDS = {
    "CheckpointRequest": {
        "plural": "checkpointrequests",
        "singular": "checkpointrequest",
        "shortNames": ["ckpt"],
        "phases": ["Pending", "Scheduled", "Checkpointing", "Uploading", "Succeeded", "Failed"],
    },
    "RestoreRequest": {
        "plural": "restorerequests",
        "singular": "restorerequest",
        "shortNames": ["rstr"],
        "phases": ["Pending", "Scheduled", "Fetching", "Restoring", "Succeeded", "Failed"],
    },
    "CheckpointPolicy": {
        "plural": "checkpointpolicies",
        "singular": "checkpointpolicy",
        "shortNames": ["ckptpol"],
        "phases": None,
    },
}


# ---------------------------------------------------------------------------
# Loading


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_crds():
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs = load_yaml_docs(path)
        assert len(docs) == 1, f"{path.name}: expected exactly one YAML document"
        crd = docs[0]
        crds[crd["spec"]["names"]["kind"]] = (path, crd)
    return crds


CRDS = load_crds()


def crd(kind):
    return CRDS[kind][1]


def version_of(crd_obj):
    (v,) = crd_obj["spec"]["versions"]
    return v


def schema_of(kind):
    return version_of(crd(kind))["schema"]["openAPIV3Schema"]


def sub(node, *path):
    """Schema node at a property path: sub(s, 'spec', 'options')."""
    for p in path:
        if p == "[]":
            node = node["items"]
        else:
            node = node["properties"][p]
    return node


def example_files():
    return sorted(EXAMPLES_DIR.glob("*.yaml"))


def invalid_files():
    return sorted(INVALID_DIR.glob("*.yaml"))


def objects_in(path):
    return [d for d in load_yaml_docs(path) if d.get("apiVersion") == API_VERSION]


# ---------------------------------------------------------------------------
# Structural-schema and apiextensions.k8s.io/v1 rules

# JSONSchemaProps fields that apiextensions.k8s.io/v1 on 1.20 accepts and we
# allow. Unknown keys are silently dropped by the API server (which is how a
# CEL rule would vanish on 1.20), so any other key is an error here.
ALLOWED_KEYS = {
    "description", "type", "format", "title", "default", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "multipleOf", "enum",
    "maxProperties", "minProperties", "required", "items", "allOf", "oneOf",
    "anyOf", "not", "properties", "additionalProperties", "nullable",
    "example", "externalDocs", "uniqueItems",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type", "x-kubernetes-map-type",
}
# Rejected by v1 CRD validation, or unknown to 1.20 (and then silently lost).
FORBIDDEN_KEYS = {
    "$ref", "$schema", "id", "definitions", "patternProperties",
    "dependencies", "additionalItems", "x-kubernetes-validations",
}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
FORMATS = {
    "int32", "int64", "float", "double", "byte", "binary", "date",
    "date-time", "duration", "password", "uuid", "uri", "email", "hostname",
    "ipv4", "ipv6", "cidr", "mac", "quantity",
}
JUNCTORS = ("allOf", "anyOf", "oneOf")
# Forbidden inside allOf/anyOf/oneOf/not (validateNestedValueValidation).
NESTED_FORBIDDEN = {"type", "additionalProperties", "default", "title",
                    "description", "nullable"}
# RE2 (Go regexp) lacks these; Python accepts them.
NON_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]|\(\?P=|[*+?}]\+")


def _type_ok(value, typ):
    if typ == "string":
        return isinstance(value, str)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "object":
        return isinstance(value, dict)
    if typ == "array":
        return isinstance(value, list)
    return False


def _fmt(path):
    return ".".join(str(p) for p in path) or "<root>"


def _nested_problems(node, outer, path):
    """Rules for a schema under a logical junctor, checked against the
    structural node `outer` it constrains (completeness)."""
    problems = []
    if not isinstance(node, dict):
        return [f"{_fmt(path)}: must be a schema object"]
    for key in node:
        if key in NESTED_FORBIDDEN or key.startswith("x-kubernetes-"):
            problems.append(f"{_fmt(path)}.{key}: must not be set under a logical junctor")
        elif key not in ALLOWED_KEYS:
            problems.append(f"{_fmt(path)}.{key}: unknown or forbidden keyword")
    if "metadata" in node.get("properties", {}):
        problems.append(f"{_fmt(path)}.properties.metadata: must not be specified in a nested context")
    for name, prop in node.get("properties", {}).items():
        outer_prop = (outer or {}).get("properties", {}).get(name)
        if outer_prop is None:
            problems.append(f"{_fmt(path)}.properties.{name}: not specified outside the junctor")
        problems += _nested_problems(prop, outer_prop, path + ("properties", name))
    if "items" in node:
        outer_items = (outer or {}).get("items")
        if outer_items is None:
            problems.append(f"{_fmt(path)}.items: not specified outside the junctor")
        problems += _nested_problems(node["items"], outer_items, path + ("items",))
    for j in JUNCTORS:
        for i, branch in enumerate(node.get(j, [])):
            problems += _nested_problems(branch, outer, path + (j, i))
    if "not" in node:
        problems += _nested_problems(node["not"], outer, path + ("not",))
    if "pattern" in node:
        problems += _pattern_problems(node["pattern"], path)
    return problems


def _pattern_problems(pattern, path):
    problems = []
    try:
        re.compile(pattern)
    except re.error as e:
        problems.append(f"{_fmt(path)}.pattern: does not compile: {e}")
    if NON_RE2.search(pattern):
        problems.append(f"{_fmt(path)}.pattern: uses syntax Go's RE2 lacks")
    return problems


def _node_problems(node, path, level):
    """Rules for a structural (non-junctor) schema node and its subtree."""
    problems = []
    where = _fmt(path)
    if not isinstance(node, dict):
        return [f"{where}: must be a schema object"]
    for key in node:
        if key in FORBIDDEN_KEYS:
            problems.append(f"{where}.{key}: forbidden in apiextensions.k8s.io/v1 on Kubernetes 1.20")
        elif key not in ALLOWED_KEYS:
            problems.append(f"{where}.{key}: unknown keyword")

    typ = node.get("type")
    int_or_string = node.get("x-kubernetes-int-or-string", False)
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if typ is None and not (int_or_string or preserve):
        problems.append(f"{where}: type must not be empty")
    if typ is not None and typ not in TYPES:
        problems.append(f"{where}.type: {typ!r} is not a valid type")
    if level == "root" and typ != "object":
        problems.append(f"{where}.type: must be object at the root")
    if int_or_string and preserve:
        problems.append(f"{where}: int-or-string and preserve-unknown-fields are exclusive")

    if "format" in node and node["format"] not in FORMATS:
        problems.append(f"{where}.format: unknown format {node['format']!r}")
    if node.get("format") in ("int32", "int64") and typ != "integer":
        problems.append(f"{where}.format: {node['format']} needs type integer")
    if node.get("format") == "date-time" and typ != "string":
        problems.append(f"{where}.format: date-time needs type string")
    if node.get("uniqueItems"):
        problems.append(f"{where}.uniqueItems: cannot be true in apiextensions.k8s.io/v1")

    props = node.get("properties")
    addl = node.get("additionalProperties")
    if props is not None and addl is not None:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if isinstance(addl, bool):
        problems.append(f"{where}.additionalProperties: must be a schema, not a boolean")
    if level == "root" and addl is not None:
        problems.append(f"{where}.additionalProperties: not allowed at the root")
    if (props is not None or addl is not None) and typ not in (None, "object"):
        problems.append(f"{where}: properties on a non-object")
    if typ == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{where}.items: must be one schema for an array")
    if "items" in node and typ != "array":
        problems.append(f"{where}.items: only for arrays")

    for req in node.get("required", []):
        if req not in (props or {}):
            problems.append(f"{where}.required: {req!r} is not a property")
    if len(set(node.get("required", []))) != len(node.get("required", [])):
        problems.append(f"{where}.required: duplicates")

    for lo, hi in (("minimum", "maximum"), ("minLength", "maxLength"),
                   ("minItems", "maxItems"), ("minProperties", "maxProperties")):
        if lo in node and hi in node and node[lo] > node[hi]:
            problems.append(f"{where}: {lo} > {hi}")
    for key in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
        if key in node and (not _type_ok(node[key], "integer") or node[key] < 0):
            problems.append(f"{where}.{key}: must be a non-negative integer")

    if typ is not None:
        for i, value in enumerate(node.get("enum", [])):
            if not _type_ok(value, typ):
                problems.append(f"{where}.enum[{i}]: {value!r} is not of type {typ}")
        if "default" in node and not _type_ok(node["default"], typ):
            problems.append(f"{where}.default: {node['default']!r} is not of type {typ}")
    if "enum" in node and len(node["enum"]) != len({json.dumps(v) for v in node["enum"]}):
        problems.append(f"{where}.enum: duplicates")
    if "pattern" in node:
        problems += _pattern_problems(node["pattern"], path)
        if typ != "string":
            problems.append(f"{where}.pattern: only for strings")

    list_type = node.get("x-kubernetes-list-type")
    map_keys = node.get("x-kubernetes-list-map-keys")
    if list_type is not None:
        if typ != "array":
            problems.append(f"{where}: x-kubernetes-list-type on a non-array")
        if list_type not in ("atomic", "set", "map"):
            problems.append(f"{where}: x-kubernetes-list-type {list_type!r} is unknown")
    if map_keys is not None and list_type != "map":
        problems.append(f"{where}: x-kubernetes-list-map-keys needs x-kubernetes-list-type: map")
    if list_type == "map":
        items = node.get("items", {})
        if items.get("type") != "object":
            problems.append(f"{where}: a map list needs object items")
        if not map_keys:
            problems.append(f"{where}: a map list needs x-kubernetes-list-map-keys")
        for key in map_keys or []:
            key_schema = items.get("properties", {}).get(key)
            if key_schema is None:
                problems.append(f"{where}: list map key {key!r} is not an item property")
            elif key not in items.get("required", []) and "default" not in key_schema:
                problems.append(f"{where}: list map key {key!r} must be required or defaulted")
            elif key_schema.get("type") not in ("string", "integer", "number", "boolean"):
                problems.append(f"{where}: list map key {key!r} must be a scalar")
    if list_type == "set":
        if node.get("items", {}).get("type") not in ("string", "integer", "number", "boolean"):
            problems.append(f"{where}: a set list needs scalar items")

    # Subtrees.
    for name, prop in (props or {}).items():
        child = path + ("properties", name)
        if level == "root" and name == "metadata":
            problems += _metadata_problems(prop, child)
            continue
        if level == "root" and name in ("apiVersion", "kind") and prop.get("type") != "string":
            problems.append(f"{_fmt(child)}.type: must be string")
        problems += _node_problems(prop, child, "field")
    if isinstance(node.get("items"), dict):
        problems += _node_problems(node["items"], path + ("items",), "item")
    if isinstance(addl, dict):
        problems += _node_problems(addl, path + ("additionalProperties",), "field")
    for j in JUNCTORS:
        branches = node.get(j, [])
        if not isinstance(branches, list) or not branches:
            if j in node:
                problems.append(f"{where}.{j}: must be a non-empty list")
            continue
        for i, branch in enumerate(branches):
            problems += _nested_problems(branch, node, path + (j, i))
    if "not" in node:
        problems += _nested_problems(node["not"], node, path + ("not",))
    return problems


def _metadata_problems(node, path):
    """metadata at the root may restrict name and generateName only; we do
    not restrict it at all (Kubernetes validates ObjectMeta itself)."""
    problems = []
    if node.get("type") != "object":
        problems.append(f"{_fmt(path)}.type: must be object")
    extra = set(node) - {"type", "properties"}
    if extra:
        problems.append(f"{_fmt(path)}: must not specify anything but type, name and generateName: {sorted(extra)}")
    if set(node.get("properties", {})) - {"name", "generateName"}:
        problems.append(f"{_fmt(path)}.properties: only name and generateName may be specified")
    return problems


def structural_problems(schema):
    """Everything that would make kube-apiserver 1.20 reject the schema of an
    apiextensions.k8s.io/v1 CRD (as far as it can be checked offline)."""
    return _node_problems(schema, ("openAPIV3Schema",), "root")


def missing_descriptions(node, path=("openAPIV3Schema",)):
    """Fields (properties entries) without a description, except the root's
    metadata, which may not carry one."""
    missing = []
    for name, prop in node.get("properties", {}).items():
        child = path + ("properties", name)
        if not (len(path) == 1 and name == "metadata") and not str(prop.get("description", "")).strip():
            missing.append(_fmt(child))
        missing += missing_descriptions(prop, child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            if node[key].get("type") == "object" and node[key].get("properties") and not node[key].get("description"):
                missing.append(_fmt(path + (key,)))
            missing += missing_descriptions(node[key], path + (key,))
    return missing


def empty_string_hazards(node, path=(), root=True):
    """String fields that accept "" but are not nullable.

    kube-apiserver 1.20 built with Go >= 1.19 (as Debian bookworm builds it)
    validates an empty string like null: go-openapi's type check compares
    reflect.Zero(string) with the value, and since Go 1.19 both point at the
    runtime's shared zero buffer. So a field where "" is meaningful (messages,
    label values) must be nullable, and any other string field must reject ""
    itself (minLength, pattern or enum) so that "" never looks valid."""
    found = []
    if node.get("type") == "string" and not node.get("nullable") and not root:
        accepts_empty = (node.get("minLength", 0) < 1
                         and ("pattern" not in node or re.search(node["pattern"], "") is not None)
                         and ("enum" not in node or "" in node["enum"])
                         and node.get("format") != "date-time")
        if accepts_empty:
            found.append(".".join(path))
    for name, prop in node.get("properties", {}).items():
        if root and name in ("apiVersion", "kind"):
            continue
        found += empty_string_hazards(prop, path + (name,), root=False)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += empty_string_hazards(node[key], path + (f"<{key}>",), root=False)
    return found


def defaulted_nodes(node, path=()):
    """(path, schema node) of every structural node that has a default."""
    found = []
    if "default" in node:
        found.append((path, node))
    for name, prop in node.get("properties", {}).items():
        found += defaulted_nodes(prop, path + (name,))
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += defaulted_nodes(node[key], path + (f"<{key}>",))
    return found


# ---------------------------------------------------------------------------
# Server-side behaviour: pruning, defaulting, validation


def prune(obj, node, root=True):
    """Drop unknown fields the way the API server does (structural pruning)."""
    if isinstance(obj, dict) and node.get("type") == "object" or isinstance(obj, dict) and "properties" in node:
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return
        props = node.get("properties")
        addl = node.get("additionalProperties")
        for key in list(obj):
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            if props is not None and key in props:
                prune(obj[key], props[key], root=False)
            elif isinstance(addl, dict):
                prune(obj[key], addl, root=False)
            else:
                del obj[key]
    elif isinstance(obj, list) and isinstance(node.get("items"), dict):
        for item in obj:
            prune(item, node["items"], root=False)


def apply_defaults(obj, node):
    """structuraldefaulting.Default: set absent fields that have a default
    (a deep copy), then recurse into every present field, so that defaults
    nested in a defaulted object apply as well."""
    if isinstance(obj, dict):
        for key, prop in node.get("properties", {}).items():
            if "default" in prop and (key not in obj or (obj[key] is None and not prop.get("nullable"))):
                obj[key] = copy.deepcopy(prop["default"])
        for key, value in obj.items():
            if key in node.get("properties", {}):
                apply_defaults(value, node["properties"][key])
            elif isinstance(node.get("additionalProperties"), dict):
                apply_defaults(value, node["additionalProperties"])
    elif isinstance(obj, list) and isinstance(node.get("items"), dict):
        for item in obj:
            apply_defaults(item, node["items"])
    return obj


def to_jsonschema(node, strict, nested=False):
    """The OpenAPI v3 subset used by CRDs, as a draft-7 JSON Schema.
    strict=True also rejects unknown fields (the API server prunes them)."""
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("description", "example", "externalDocs",
                                                      "title", "nullable", "default"):
            continue
        if key == "properties":
            out[key] = {k: to_jsonschema(v, strict, nested) for k, v in value.items()}
        elif key in ("items", "not"):
            out[key] = to_jsonschema(value, strict, nested or key == "not")
        elif key == "additionalProperties":
            out[key] = to_jsonschema(value, strict, nested) if isinstance(value, dict) else value
        elif key in JUNCTORS:
            out[key] = [to_jsonschema(v, strict, True) for v in value]
        else:
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if (strict and not nested and "properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMAT_CHECKER = jsonschema.FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value):
    return not isinstance(value, str) or bool(RFC3339.match(value))


@FORMAT_CHECKER.checks("int32")
def _is_int32(value):
    return not isinstance(value, int) or -(2 ** 31) <= value < 2 ** 31


@FORMAT_CHECKER.checks("int64")
def _is_int64(value):
    return not isinstance(value, int) or -(2 ** 63) <= value < 2 ** 63


def _validator(js_schema):
    return jsonschema.Draft7Validator(js_schema, format_checker=FORMAT_CHECKER)


def _go_path(parts):
    # kube-apiserver 1.20 (go-openapi) names fields with dots and leaves
    # array indices out: spec.selector.matchExpressions.key
    return ".".join(str(p) for p in parts if not isinstance(p, int))


def _go_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps({dict: "object", list: "array"}.get(type(value), "null"))


def _go_type(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", dict: "object", list: "array"}.get(type(value), "null")


def render_error(err):
    """One jsonschema error as the lines kube-apiserver 1.20 would print:
    field.Error wrapping go-openapi's message."""
    path = _go_path(err.absolute_path)
    field = path or "<nil>"
    value = err.instance
    rule = err.validator
    bound = err.validator_value

    def invalid(msg):
        return [f"{field}: Invalid value: {_go_value(value)}: {path} in body {msg}"]

    if rule == "required":
        missing = [r for r in bound if not isinstance(value, dict) or r not in value]
        return [f"{path + '.' if path else ''}{r}: Required value" for r in missing]
    if rule == "enum":
        allowed = ", ".join(json.dumps(v) if isinstance(v, str) else json.dumps(v) for v in bound)
        return [f"{field}: Unsupported value: {_go_value(value)}: supported values: {allowed}"]
    if rule == "type":
        return [f"{field}: Invalid value: {json.dumps(_go_type(value))}: {path} in body must be of type {bound}: {json.dumps(_go_type(value))}"]
    if rule == "format":
        return invalid(f"must be of type {bound}: {_go_value(value)}")
    messages = {
        "minimum": "should be greater than or equal to {}",
        "maximum": "should be less than or equal to {}",
        "exclusiveMinimum": "should be greater than {}",
        "exclusiveMaximum": "should be less than {}",
        "minLength": "should be at least {} chars long",
        "maxLength": "should be at most {} chars long",
        "pattern": "should match '{}'",
        "minItems": "should have at least {} items",
        "maxItems": "should have at most {} items",
        "minProperties": "should have at least {} properties",
        "maxProperties": "should have at most {} properties",
        "multipleOf": "should be a multiple of {}",
    }
    if rule in ("minProperties", "maxProperties"):
        # go-openapi reports the bound as the value here
        return [f"{field}: Invalid value: {bound}: {path} in body {messages[rule].format(bound)}"]
    if rule in messages:
        return invalid(messages[rule].format(bound))
    if rule == "oneOf":
        n_valid = sum(1 for s in bound if _validator(s).is_valid(value))
        found = "Found none valid" if n_valid == 0 else f"Found {n_valid} valid alternatives"
        lines = [f"<nil>: Invalid value: \"\": {json.dumps(path)} must validate one and only one schema (oneOf). {found}"]
        if n_valid == 0 and err.context:
            # go-openapi also reports the failures of the closest alternative.
            best = min(range(len(bound)),
                       key=lambda i: sum(1 for e in err.context if e.schema_path and e.schema_path[0] == i))
            for e in err.context:
                if e.schema_path and e.schema_path[0] == best:
                    lines += render_error(e)
        return lines
    if rule == "anyOf":
        return [f"<nil>: Invalid value: \"\": {json.dumps(path)} must validate at least one schema (anyOf)"]
    if rule == "allOf":
        return [f"<nil>: Invalid value: \"\": {json.dumps(path)} must validate all the schemas (allOf)"]
    if rule == "not":
        return [f"<nil>: Invalid value: \"\": {json.dumps(path)} must not validate the schema (not)"]
    if rule == "additionalProperties":
        extra = sorted(set(value) - set(err.schema.get("properties", {})))
        return [f"unknown field \"{path + '.' if path else ''}{k}\"" for k in extra]
    return [f"{field}: Invalid value: {_go_value(value)}: {err.message}"]


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def meta_errors(obj):
    errors = []
    kind = obj.get("kind")
    if obj.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion: Invalid value: {obj.get('apiVersion')!r}")
    if kind not in KINDS:
        errors.append(f"kind: Invalid value: {kind!r}")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        errors.append("metadata.name: Required value")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}")
    namespace = meta.get("namespace")
    if namespace is not None and (len(namespace) > 63 or not DNS1123_LABEL.match(namespace)):
        errors.append(f"metadata.namespace: Invalid value: {namespace!r}")
    return errors


def server_validate(obj, drop_status=True):
    """What a create through kube-apiserver does with `obj`: drop status
    (status subresource), prune unknown fields, apply defaults, validate.
    Returns (the object as stored, [error lines])."""
    errors = meta_errors(obj)
    if errors:
        return obj, errors
    schema = schema_of(obj["kind"])
    stored = copy.deepcopy(obj)
    if drop_status:
        stored.pop("status", None)
    prune(stored, schema)
    apply_defaults(stored, schema)
    validator = _validator(to_jsonschema(schema, strict=False))
    for err in sorted(validator.iter_errors(stored), key=lambda e: list(map(str, e.absolute_path))):
        errors += render_error(err)
    return stored, errors


def strict_validate(obj):
    """Like server_validate, but unknown fields are errors (catches typos
    the API server would silently drop)."""
    errors = meta_errors(obj)
    if errors:
        return errors
    schema = schema_of(obj["kind"])
    defaulted = apply_defaults(copy.deepcopy(obj), schema)
    validator = _validator(to_jsonschema(schema, strict=True))
    for err in validator.iter_errors(defaulted):
        errors += render_error(err)
    return errors


# ---------------------------------------------------------------------------
# The CRD documents


def test_all_crds_present():
    assert sorted(CRDS) == sorted(KINDS)
    names = sorted(p.name for p, _ in CRDS.values())
    assert names == sorted(f"{k['plural']}.{GROUP}.yaml" for k in KINDS.values())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_identity(kind):
    path, c = CRDS[kind]
    want = KINDS[kind]
    assert c["apiVersion"] == "apiextensions.k8s.io/v1"
    assert c["kind"] == "CustomResourceDefinition"
    assert c["metadata"]["name"] == f"{want['plural']}.{GROUP}"
    assert path.name == c["metadata"]["name"] + ".yaml"
    spec = c["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == kind
    assert names["listKind"] == kind + "List"
    assert names["plural"] == want["plural"]
    assert names["singular"] == want["singular"]
    assert names["shortNames"] == want["shortNames"]
    assert names["categories"] == ["kybernate"]
    assert "preserveUnknownFields" not in spec or spec["preserveUnknownFields"] is False
    assert len(spec["versions"]) == 1
    v = version_of(c)
    assert v["name"] == VERSION and v["served"] is True and v["storage"] is True
    assert v["subresources"] == {"status": {}}
    assert set(v) <= {"name", "served", "storage", "schema", "subresources",
                      "additionalPrinterColumns", "deprecated", "deprecationWarning"}


def test_short_names_unique():
    short = [s for _, c in CRDS.values() for s in c["spec"]["names"]["shortNames"]]
    assert len(short) == len(set(short))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_is_structural(kind):
    assert structural_problems(schema_of(kind)) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_top_level(kind):
    s = schema_of(kind)
    assert set(s["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert s["properties"]["metadata"] == {"type": "object"}
    assert s["required"] == ["spec"]
    assert s["properties"]["spec"]["type"] == "object"
    assert s["properties"]["status"]["type"] == "object"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_field_has_a_description(kind):
    assert missing_descriptions(schema_of(kind)) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_phase_enum(kind):
    phases = KINDS[kind]["phases"]
    status = sub(schema_of(kind), "status")
    if phases is None:
        assert "phase" not in status["properties"]
    else:
        assert status["properties"]["phase"]["enum"] == phases


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_defaults_are_valid(kind):
    nodes = defaulted_nodes(schema_of(kind))
    assert nodes, "expected defaults"
    for path, node in nodes:
        assert "metadata" not in path, f"{path}: no defaults under metadata"
        value = apply_defaults(copy.deepcopy(node["default"]), node)
        errors = [e.message for e in _validator(to_jsonschema(node, strict=True)).iter_errors(value)]
        assert errors == [], f"default of {'.'.join(path)}: {errors}"
        pruned = copy.deepcopy(node["default"])
        prune(pruned, node, root=False)
        assert pruned == node["default"], f"default of {'.'.join(path)} has unknown fields"
        if "enum" in node:
            assert node["default"] in node["enum"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_strings_that_may_be_empty_are_nullable(kind):
    assert empty_string_hazards(schema_of(kind)) == []


def test_empty_string_checker_catches():
    s = copy.deepcopy(schema_of("CheckpointRequest"))
    sub(s, "status", "conditions", "[]", "message").pop("nullable")
    sub(s, "status", "nodeName").pop("minLength")
    assert empty_string_hazards(s) == ["status.nodeName", "status.conditions.<items>.message"]


def _resolve_json_path(schema, json_path):
    if json_path == ".metadata.creationTimestamp":
        return {"type": "string", "format": "date-time"}
    assert re.fullmatch(r"(\.[A-Za-z][A-Za-z0-9]*)+", json_path), f"unsupported jsonPath {json_path}"
    node = schema
    for part in json_path.split(".")[1:]:
        props = node.get("properties")
        assert props is not None and part in props, f"{json_path}: no field {part!r}"
        node = props[part]
    return node


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_printer_columns(kind):
    columns = version_of(crd(kind))["additionalPrinterColumns"]
    schema = schema_of(kind)
    names = [c["name"] for c in columns]
    assert len(names) == len(set(names))
    assert names[-1] == "Age"
    if KINDS[kind]["phases"]:
        assert "Phase" in names and "Node" in names
    for col in columns:
        assert set(col) <= {"name", "type", "format", "description", "priority", "jsonPath"}
        assert col["type"] in ("integer", "number", "string", "boolean", "date")
        assert col.get("priority", 0) in (0, 1)
        node = _resolve_json_path(schema, col["jsonPath"])
        expected = {"date": ("string",), "integer": ("integer",), "number": ("number", "integer"),
                    "boolean": ("boolean",), "string": ("string",)}[col["type"]]
        assert node.get("type") in expected, f"column {col['name']}: {col['type']} vs {node.get('type')}"
        if col["type"] == "date":
            assert node.get("format") == "date-time"


def _without_description(node):
    node = copy.deepcopy(node)
    node.pop("description", None)
    return node


def test_shared_fragments_identical():
    cr, rr, cp = schema_of("CheckpointRequest"), schema_of("RestoreRequest"), schema_of("CheckpointPolicy")
    # options
    assert _without_description(sub(cr, "spec", "options")) == _without_description(sub(cp, "spec", "defaultOptions"))
    # storage target
    target = sub(cr, "spec", "storage")
    assert _without_description(target) == _without_description(sub(cp, "spec", "storage"))
    access = {k: v for k, v in target["properties"].items() if k != "uri"}
    assert sub(rr, "spec", "storage")["properties"] == access
    # conditions
    conditions = sub(cr, "status", "conditions")
    assert sub(rr, "status", "conditions") == conditions
    assert sub(cp, "status", "conditions") == conditions
    # URIs
    uri_rules = {k: v for k, v in sub(cr, "spec", "storage", "uri").items() if k not in ("description",)}
    for node in (sub(cr, "status", "artifactURI"), sub(rr, "spec", "source", "artifactURI"),
                 sub(rr, "status", "artifactURI")):
        assert {k: v for k, v in node.items() if k != "description"} == uri_rules
    # checkpoint IDs
    ids = [sub(cr, "spec", "checkpointID"), sub(cr, "status", "checkpointID"), sub(rr, "status", "checkpointID")]
    assert len({json.dumps(_without_description(n), sort_keys=True) for n in ids}) == 1
    # names and durations
    assert _without_description(sub(cr, "spec", "containerName")) == _without_description(sub(cp, "spec", "containerName"))
    assert (_without_description(sub(cr, "status", "stepDurationsMillis"))
            == _without_description(sub(rr, "status", "stepDurationsMillis")))
    dns = sub(cr, "spec", "podName")["pattern"]
    for node in (sub(cr, "spec", "policyRef", "name"), sub(cr, "spec", "storage", "secretRef", "name"),
                 sub(rr, "spec", "source", "checkpointRequestName"), sub(rr, "spec", "targetNodeName"),
                 sub(rr, "spec", "podTemplate", "name")):
        assert node["pattern"] == dns and node["maxLength"] == 253


# ---------------------------------------------------------------------------
# The checker itself must be able to fail


def _broken(mutate):
    s = copy.deepcopy(schema_of("CheckpointRequest"))
    mutate(s)
    return structural_problems(s)


@pytest.mark.parametrize("mutate,needle", [
    (lambda s: sub(s, "spec", "podName").pop("type"), "type must not be empty"),
    (lambda s: sub(s, "spec").__setitem__("x-kubernetes-validations", [{"rule": "true"}]), "x-kubernetes-validations"),
    (lambda s: sub(s, "spec")["anyOf"][0].__setitem__("description", "x"), "logical junctor"),
    (lambda s: sub(s, "spec")["anyOf"][0].__setitem__("properties", {"bogus": {}}), "outside the junctor"),
    (lambda s: sub(s, "spec", "options").__setitem__("additionalProperties", {"type": "string"}), "mutually exclusive"),
    (lambda s: sub(s, "metadata").__setitem__("properties", {"labels": {"type": "object"}}), "name and generateName"),
    (lambda s: sub(s, "metadata").__setitem__("description", "x"), "anything but type"),
    (lambda s: sub(s, "status", "conditions", "[]").__setitem__("required", ["status"]), "required or defaulted"),
    (lambda s: sub(s, "spec", "podName").__setitem__("pattern", "^(?!x)a$"), "RE2"),
    (lambda s: sub(s, "spec", "options", "gpuMode").__setitem__("default", 1), "not of type string"),
    (lambda s: sub(s, "spec", "options", "gpuMode").__setitem__("minimun", 1), "unknown keyword"),
    (lambda s: sub(s, "status", "gpus").pop("items"), "items"),
])
def test_structural_checker_catches(mutate, needle):
    problems = _broken(mutate)
    assert any(needle in p for p in problems), problems


def test_description_checker_catches():
    s = copy.deepcopy(schema_of("CheckpointRequest"))
    sub(s, "spec", "options", "compression", "level").pop("description")
    assert missing_descriptions(s) == ["openAPIV3Schema.properties.spec.properties.options.properties.compression.properties.level"]


# ---------------------------------------------------------------------------
# Patterns


def _pattern(kind, *path):
    return re.compile(sub(schema_of(kind), *path)["pattern"])


@pytest.mark.parametrize("value,ok", [
    ("a", True), ("ckpt-1", True), ("A.b_c-D9", True), ("x" * 128, True), ("ckpt.", True),
    ("llm-0.20240101T000000Z", True),
    ("", False), (".hidden", False), ("-x", False), ("_x", False), ("a..b", False), ("..", False),
    ("a/b", False), ("a\\b", False), ("a b", False), ("ä", False), ("a...", False),
])
def test_checkpoint_id_pattern(value, ok):
    node = sub(schema_of("CheckpointRequest"), "spec", "checkpointID")
    valid = bool(re.fullmatch(node["pattern"], value)) and len(value) <= node["maxLength"]
    assert valid == ok
    # Everything accepted is also accepted by the node agent's rule.
    if valid:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value) and ".." not in value
    assert not re.fullmatch(node["pattern"], "x" * 129) or node["maxLength"] == 128


@pytest.mark.parametrize("value,ok", [
    ("s3://kybernate-checkpoints", True),
    ("s3://kybernate-checkpoints/", True),
    ("s3://kybernate-checkpoints/tenant-a/llm", True),
    ("s3://my.bucket.example/a/b.tar.zst", True),
    ("s3://b12/..hidden/x...y", True),
    ("file:///var/lib/kybernate", True),
    ("file:///mnt/ckpt/", True),
    ("http://bucket/x", False),
    ("gs://bucket/x", False),
    ("s3://", False),
    ("s3://ab", False),
    ("s3://Bucket/x", False),
    ("s3://bucket/../x", False),
    ("s3://bucket/a/..", False),
    ("s3://bucket/a/./b", False),
    ("s3://bucket//x", False),
    ("s3://bucket/x?versionId=1", False),
    ("s3://bucket/x#frag", False),
    ("s3://bucket/%2e%2e/x", False),
    ("file://", False),
    ("file:///", False),
    ("file://host/path", False),
    ("file:///a/../b", False),
    ("file:///a b", False),
    ("/var/lib/kybernate", False),
])
def test_uri_pattern(value, ok):
    assert bool(_pattern("CheckpointRequest", "spec", "storage", "uri").fullmatch(value)) == ok


@pytest.mark.parametrize("value,ok", [
    ("https://s3.us-east-1.amazonaws.com", True),
    ("http://minio.storage.svc:9000", True),
    ("http://10.0.0.5:9000/", True),
    ("https://[fd00::1]:9000", True),
    ("minio:9000", False),
    ("ftp://minio", False),
    ("https://minio/path?x=1", False),
    ("https://user:pw@minio", False),
])
def test_endpoint_pattern(value, ok):
    assert bool(_pattern("CheckpointRequest", "spec", "storage", "endpoint").fullmatch(value)) == ok


def test_gpu_uuid_pattern():
    p = _pattern("CheckpointRequest", "status", "gpus", "[]", "uuid")
    assert p.fullmatch("GPU-5a2d1c9e-0b4f-4e1a-9c77-3f1e2d4c5b6a")
    assert not p.fullmatch("MIG-5a2d1c9e-0b4f-4e1a-9c77-3f1e2d4c5b6a")
    assert not p.fullmatch("GPU-0")


# ---------------------------------------------------------------------------
# Examples


def test_examples_exist_for_every_kind():
    files = example_files()
    assert len(files) > 0
    kinds = [o["kind"] for f in files for o in objects_in(f)]
    for kind in KINDS:
        assert kind in kinds, f"no example of {kind}"
    sources = [o["spec"]["source"] for f in files for o in objects_in(f) if o["kind"] == "RestoreRequest"]
    assert any("checkpointRequestName" in s for s in sources)
    assert any("artifactURI" in s for s in sources)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_is_valid(path):
    objs = objects_in(path)
    assert objs, f"{path.name}: no {API_VERSION} object"
    for obj in objs:
        assert "status" not in obj, "examples carry no status"
        assert obj["metadata"].get("namespace"), "examples name their namespace"
        assert strict_validate(obj) == []
        stored, errors = server_validate(obj)
        assert errors == []
        # Nothing the example says is pruned away.
        for key, value in obj["spec"].items():
            assert key in stored["spec"]


# ---------------------------------------------------------------------------
# Invalid objects


def _expectations(path):
    return re.findall(r"^#\s*expect:\s*(.+?)\s*$", path.read_text(encoding="utf-8"), re.M)


def test_invalid_files_exist_for_every_kind():
    files = invalid_files()
    assert len(files) >= 20
    kinds = {o["kind"] for f in files for o in objects_in(f)}
    assert kinds == set(KINDS)


@pytest.mark.parametrize("path", invalid_files(), ids=lambda p: p.name)
def test_invalid_is_rejected(path):
    expectations = _expectations(path)
    assert expectations, f"{path.name}: no '# expect:' line"
    objs = objects_in(path)
    assert len(objs) == 1, f"{path.name}: expected exactly one {API_VERSION} object"
    _, errors = server_validate(objs[0])
    assert errors, f"{path.name}: accepted, but should be rejected"
    text = "\n".join(errors)
    for expected in expectations:
        assert expected in text, f"{path.name}: {expected!r} not in:\n{text}"


def test_renderer_matches_apiserver_wording():
    obj = {"apiVersion": API_VERSION, "kind": "CheckpointRequest", "metadata": {"name": "x"},
           "spec": {"podName": "p", "options": {"gpuMode": "Sometimes", "compression": {"level": 0}},
                    "storage": {"uri": "s3://bucket"}}}
    _, errors = server_validate(obj)
    assert errors == [
        'spec.options.compression.level: Invalid value: 0: spec.options.compression.level '
        'in body should be greater than or equal to 1',
        'spec.options.gpuMode: Unsupported value: "Sometimes": supported values: "Auto", "Off", "Required"',
    ]


def test_unknown_fields_pruned_by_server_but_caught_strictly():
    obj = {"apiVersion": API_VERSION, "kind": "CheckpointRequest", "metadata": {"name": "x"},
           "spec": {"podName": "p", "leaveRuning": True, "storage": {"uri": "s3://bucket"}}}
    stored, errors = server_validate(obj)
    assert errors == [] and "leaveRuning" not in stored["spec"]
    assert strict_validate(obj) == ['unknown field "spec.leaveRuning"']


def test_status_is_not_validated_on_create_but_is_on_status_update():
    obj = {"apiVersion": API_VERSION, "kind": "CheckpointRequest", "metadata": {"name": "x"},
           "spec": {"podName": "p", "storage": {"uri": "s3://bucket"}},
           "status": {"phase": "Done", "checkpointID": "a..b"}}
    assert server_validate(obj)[1] == []
    _, errors = server_validate(obj, drop_status=False)
    text = "\n".join(errors)
    assert 'status.phase: Unsupported value: "Done"' in text
    assert "status.checkpointID in body should match" in text


def test_full_status_is_valid():
    obj = {"apiVersion": API_VERSION, "kind": "CheckpointRequest", "metadata": {"name": "x"},
           "spec": {"podName": "p", "storage": {"uri": "s3://bucket"}},
           "status": {
               "phase": "Succeeded", "nodeName": "gpu-node-01", "podUID": "0f9a7f0e-1111-4c3b-9d7e-2b4e6c8a0d1f",
               "containerName": "vllm", "checkpointID": "llm-0-20240101",
               "artifactURI": "s3://bucket/default/llm-0-20240101.tar.zst",
               "archiveSHA256": "0" * 64, "imageBytes": 17179869184, "archiveBytes": 6442450944,
               "gpus": [{"uuid": "GPU-5a2d1c9e-0b4f-4e1a-9c77-3f1e2d4c5b6a", "model": "NVIDIA H100 80GB HBM3"}],
               "stepDurationsMillis": {"gpuLock": 12, "gpuCheckpoint": 2100, "criuDump": 5300, "total": 9800},
               "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:10.5+01:00",
               "message": "", "observedGeneration": 1,
               "conditions": [{"type": "Ready", "status": "True", "reason": "Uploaded", "message": "",
                               "lastTransitionTime": "2024-01-01T00:00:10Z", "observedGeneration": 1}],
           }}
    assert strict_validate(obj) == []
    obj["status"]["startTime"] = "yesterday"
    obj["status"]["conditions"][0]["status"] = "true"
    text = "\n".join(server_validate(obj, drop_status=False)[1])
    assert "status.startTime in body must be of type date-time" in text
    assert 'status.conditions.status: Unsupported value: "true"' in text


# ---------------------------------------------------------------------------
# Defaulting


def _minimal(kind, spec):
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "m", "namespace": "default"}, "spec": spec}


def test_minimal_checkpointrequest_defaults():
    stored, errors = server_validate(_minimal("CheckpointRequest", {"podName": "llm-0", "storage": {"uri": "s3://bucket"}}))
    assert errors == []
    assert stored["spec"]["options"] == {
        "leaveRunning": False,
        "gpuMode": "Auto",
        "tcpEstablished": False,
        "fileLocks": False,
        "compression": {"algorithm": "zstd", "level": 3},
    }
    assert stored["spec"]["storage"] == {"uri": "s3://bucket", "forcePathStyle": False}
    assert "containerName" not in stored["spec"] and "checkpointID" not in stored["spec"]


def test_partial_options_keep_user_values():
    stored, errors = server_validate(_minimal("CheckpointRequest", {
        "podName": "llm-0", "storage": {"uri": "s3://bucket"},
        "options": {"gpuMode": "Off", "compression": {"level": 19}}}))
    assert errors == []
    assert stored["spec"]["options"]["gpuMode"] == "Off"
    assert stored["spec"]["options"]["compression"] == {"algorithm": "zstd", "level": 19}
    assert stored["spec"]["options"]["leaveRunning"] is False


def test_minimal_restorerequest_defaults():
    stored, errors = server_validate(_minimal("RestoreRequest", {"source": {"checkpointRequestName": "c"}}))
    assert errors == []
    assert stored["spec"] == {"source": {"checkpointRequestName": "c"}, "gpuMapping": {"policy": "SameModel"}}


def test_minimal_checkpointpolicy_defaults():
    stored, errors = server_validate(_minimal("CheckpointPolicy", {
        "selector": {"matchLabels": {"app": "llm"}},
        "triggers": {"schedule": {"intervalSeconds": 60}},
        "storage": {"uri": "file:///mnt/ckpt"}}))
    assert errors == []
    spec = stored["spec"]
    assert spec["triggers"] == {"schedule": {"intervalSeconds": 60}, "beforeTermination": False,
                                "onNodeDrain": False, "onPreemption": False}
    assert spec["retention"] == {"maxCount": 10}
    assert spec["suspend"] is False
    assert spec["defaultOptions"]["gpuMode"] == "Auto"
    assert spec["defaultOptions"]["compression"] == {"algorithm": "zstd", "level": 3}


# ---------------------------------------------------------------------------
# Documentation


def test_docs_cover_kinds_fields_and_phases():
    text = DOCS.read_text(encoding="utf-8")
    assert "kubectl apply -f deploy/crds/" in text
    for kind, want in KINDS.items():
        assert kind in text
        for short in want["shortNames"]:
            assert f"`{short}`" in text
        for phase in want["phases"] or []:
            assert phase in text
        spec = sub(schema_of(kind), "spec")
        for field in spec["properties"]:
            assert f"`{field}`" in text or f"`{field}." in text, f"docs/crds.md does not mention {kind} spec.{field}"
