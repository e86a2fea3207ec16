"""fcspec - Firecracker's Swagger 2.0 API spec as a contract: find the
operation for METHOD PATH and validate JSON values against its schemas.

The validator covers the subset of Swagger 2.0 schema keywords the
Firecracker spec uses: $ref, type (object, string, integer, number,
boolean, array), required, properties, additionalProperties, enum,
minimum, maximum, items. Descriptive keywords (description, default,
format, readOnly, example) do not constrain values.

Objects are strict by default: a property the schema does not declare is an
error, because Firecracker deserialises with serde's deny_unknown_fields and
would refuse it.
"""
import os
import re

import yaml

SPEC_NAME = "firecracker-v1.16.1.yaml"
HTTP_METHODS = ("get", "put", "patch", "post", "delete")


def spec_path():
    """$FCVM_SHARED/firecracker/<spec>, FCVM_SHARED defaulting to <repo>/../shared."""
    shared = os.environ.get("FCVM_SHARED")
    if not shared:
        here = os.path.dirname(os.path.abspath(__file__))
        shared = os.path.join(here, "..", "..", "..", "shared")
    return os.path.normpath(os.path.join(shared, "firecracker", SPEC_NAME))


def load_spec(path=None):
    with open(path or spec_path()) as f:
        return yaml.safe_load(f)


def resolve(spec, schema):
    """Follow $ref chains ("#/definitions/X") to the schema itself."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError("unsupported $ref %r" % ref)
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
        seen += 1
        if seen > 32:
            raise ValueError("$ref loop at %r" % ref)
    return schema


def _type_ok(t, v):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    raise ValueError("unsupported schema type %r" % t)


def validate(spec, schema, value, where="body", strict=True):
    """List of error strings (empty: @value satisfies @schema)."""
    schema = resolve(spec, schema)
    errs = []
    t = schema.get("type")
    if t is None and ("properties" in schema or "required" in schema):
        t = "object"
    if t is not None and not _type_ok(t, value):
        return ["%s: expected %s, got %s" % (where, t, type(value).__name__)]
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %r is not one of %r" % (where, value, schema["enum"]))
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errs.append("%s: %r is below the minimum %r" % (where, value, schema["minimum"]))
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        errs.append("%s: %r is above the maximum %r" % (where, value, schema["maximum"]))
    if t == "array" and "items" in schema:
        for i, item in enumerate(value):
            errs += validate(spec, schema["items"], item, "%s[%d]" % (where, i), strict)
    if t == "object":
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errs.append("%s: missing required property %r" % (where, name))
        extra = schema.get("additionalProperties", None if strict else True)
        for name, v in value.items():
            if name in props:
                errs += validate(spec, props[name], v, "%s.%s" % (where, name), strict)
            elif isinstance(extra, dict):
                errs += validate(spec, extra, v, "%s.%s" % (where, name), strict)
            elif not extra:
                errs.append("%s: unknown property %r" % (where, name))
    return errs


def find_operation(spec, method, path):
    """(template, operation) for METHOD PATH, or (None, None)."""
    path = path.split("?", 1)[0]
    m = method.lower()
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and m in item:
            return template, item[m]
    return None, None


def body_schema(op):
    for p in op.get("parameters", []):
        if p.get("in") == "body":
            return p.get("schema", {}), p.get("required", False)
    return None, False


def response_schema(op, status):
    """(listed, schema): listed is True when @status is named explicitly."""
    responses = op.get("responses", {})
    for k, v in responses.items():
        if str(k) == str(status):
            return True, (v or {}).get("schema")
    return False, (responses.get("default") or {}).get("schema")


def validate_request(spec, method, path, body, strict=True):
    """Errors for a request: unknown operation, body where none is taken,
    missing required body, or a body that does not match the schema."""
    template, op = find_operation(spec, method, path)
    if op is None:
        return ["%s %s: no such operation in the Firecracker API" % (method, path)]
    schema, required = body_schema(op)
    if schema is None:
        if body is not None:
            return ["%s %s: the operation takes no body" % (method, template)]
        return []
    if body is None:
        return ["%s %s: a body is required" % (method, template)] if required else []
    return ["%s %s: %s" % (method, template, e)
            for e in validate(spec, schema, body, "body", strict)]
