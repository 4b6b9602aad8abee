"""Checks podcap's OpenAPI document for tests/api_openapi.rs.

Reads one JSON object on stdin: {"document": <the OpenAPI document>, "answers": [...]}, where
each answer is {"path": <path template>, "method": "get", "status": 201, "contentType": ...,
"body": <JSON or null>}. Validates the document with openapi-spec-validator (the OpenAPI 3.x
meta-schemas plus its semantic checks: references resolve, path parameters are declared,
operation ids are unique), then validates every answer's body against the schema the document
gives for that operation, status and content type (JSON Schema 2020-12, OpenAPI 3.1's dialect).
Prints every failure and exits 1 if there is one.
"""

import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def resolve(document, item):
    """Follows a `$ref` to a component (responses may be shared references)."""
    while isinstance(item, dict) and "$ref" in item:
        node = document
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def check_answer(document, answer):
    """The errors of one answer against the document, as strings."""
    where = f'{answer["method"].upper()} {answer["path"]} -> {answer["status"]}'
    operation = document["paths"].get(answer["path"], {}).get(answer["method"])
    if operation is None:
        return [f"{where}: the operation is not documented"]
    response = operation["responses"].get(str(answer["status"]))
    if response is None:
        return [f"{where}: status {answer['status']} is not documented"]
    response = resolve(document, response)
    content = response.get("content", {})
    if answer["body"] is None:
        return [] if not content else [f"{where}: documented with a body, answered none"]
    # Media types are compared without parameters (`text/plain; version=0.0.4`).
    base = lambda media_type: media_type.split(";")[0].strip().lower()
    documented = [key for key in content if base(key) == base(answer["contentType"])]
    if not documented:
        return [f'{where}: content type {answer["contentType"]} is not documented ({sorted(content)})']
    schema = {"components": document["components"], "allOf": [content[documented[0]]["schema"]]}
    validator = Draft202012Validator(schema)
    return [
        f"{where}: {'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in validator.iter_errors(answer["body"])
    ]


def main():
    request = json.load(sys.stdin)
    document = request["document"]
    try:
        validate(document)
    except Exception as error:  # the validator raises its own exception types
        print(f"the document is not valid OpenAPI: {error}")
        return 1
    errors = [e for answer in request["answers"] for e in check_answer(document, answer)]
    for error in errors:
        print(error)
    print(f"document valid; {len(request['answers'])} answers checked, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
