"""A service's declared parameters: checking inputs before any R runs, checking outputs,
and the service's own OpenAPI document.

Types (ML Server's): ``logical``, ``numeric``, ``integer``, ``character`` (a value or an
array of values of that kind; JSON null is NA), ``vector`` (an array of scalars of one
kind), ``matrix`` (an array of rows) and ``data.frame`` (``{column: [values]}`` or an
array of row objects). Conversion to R goes through :mod:`rexec.web.rjson`, the one set
of rules sessions use too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rexec.protocol import Sexp
from rexec.web import rjson

TYPES = ("logical", "numeric", "integer", "character", "vector", "matrix", "data.frame")
PARAMETER_NAME = re.compile(r"[A-Za-z.][A-Za-z0-9._]{0,127}")
_SCALAR_KIND = {
    "logical": (bool,),
    "numeric": (int, float),
    "integer": (int, float),
    "character": (str,),
}


class InputError(ValueError):
    """An input that does not match its declaration (answered 400, naming the field)."""


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: str

    @classmethod
    def parse(cls, value: Any, where: str) -> Parameter:
        if not isinstance(value, dict) or set(value) - {"name", "type"}:
            raise ValueError(f"{where}: expected {{name, type}}")
        name, type_ = value.get("name"), value.get("type")
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            raise ValueError(f"{where}: {name!r} is not a syntactic R name")
        if type_ not in TYPES:
            raise ValueError(f"{where}: type must be one of {', '.join(TYPES)}")
        return cls(name, type_)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


def parse_parameters(values: Any, where: str) -> tuple[Parameter, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        raise ValueError(f"{where} is an array of {{name, type}}")
    parameters = tuple(Parameter.parse(v, f"{where}[{i}]") for i, v in enumerate(values))
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: names must be unique")
    return parameters


# ============================================================================ inputs


def convert_inputs(declared: tuple[Parameter, ...], body: Any) -> list[tuple[str, Sexp]]:
    """The R values for a call's JSON body; :class:`InputError` names the first bad field."""
    if not isinstance(body, dict):
        raise InputError("the request body is a JSON object of the input parameters")
    names = {p.name for p in declared}
    for key in body:
        if key not in names:
            raise InputError(f"unknown input parameter {key!r}")
    values = []
    for parameter in declared:
        if parameter.name not in body:
            raise InputError(f"missing input parameter {parameter.name!r}")
        try:
            values.append((parameter.name, convert(parameter.type, body[parameter.name])))
        except (InputError, rjson.ConversionError) as exc:
            message = f"input parameter {parameter.name!r} ({parameter.type}): {exc}"
            raise InputError(message) from None
    return values


def convert(type_: str, value: Any) -> Sexp:
    if type_ in _SCALAR_KIND:
        items = value if isinstance(value, list) else [value]
        _check_scalars(items, type_)
        return rjson.from_json(value, type_)
    if type_ == "vector":
        if not isinstance(value, list):
            value = [value]
        kinds = {_kind(v) for v in value if v is not None}
        if None in kinds or len(kinds) > 1:
            raise InputError("a vector holds scalars of one kind (numbers, strings or booleans)")
        kind = kinds.pop() if kinds else "boolean"  # all NA: a logical vector, as in R
        target = {"number": "numeric", "string": "character", "boolean": "logical"}[kind]
        if target == "numeric" and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value if v is not None
        ):
            target = "integer" if all(v is None or -(2**31) < v < 2**31 for v in value) else target
        return rjson.from_json(value, target)
    if type_ == "matrix":
        if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
            raise InputError("a matrix is an array of rows")
        return rjson.from_json(value, "matrix")
    if type_ == "data.frame":
        return rjson.from_json(_columns(value), "data.frame")
    raise InputError(f"unknown type {type_!r}")


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _check_scalars(items: list[Any], type_: str) -> None:
    allowed = _SCALAR_KIND[type_]
    for item in items:
        if item is None:
            continue
        if not isinstance(item, allowed) or (type_ != "logical" and isinstance(item, bool)):
            raise InputError(f"{item!r} is not {_article(type_)}")
        if type_ == "integer" and item != int(item):
            raise InputError(f"{item!r} is not an integer")


def _article(type_: str) -> str:
    return {"integer": "an integer", "logical": "a logical (true/false)"}.get(
        type_, f"a {type_} value"
    )


def _columns(value: Any) -> dict[str, list[Any]]:
    """``{column: [values]}`` as it is, or an array of row objects turned into columns
    (columns in order of first appearance; a row without a column gives NA there)."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise InputError("a data.frame is {column: [values]} or an array of row objects")
    names: dict[str, None] = {}
    for row in value:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in value] for name in names}


# ============================================================================ outputs

_ACCEPTS = {
    "logical": {"logical"},
    "numeric": {"numeric", "integer"},
    "integer": {"integer"},
    "character": {"character", "factor", "ordered"},
    "vector": {"logical", "integer", "numeric", "character", "factor", "ordered", "Date"},
    "matrix": {"matrix"},
    "data.frame": {"data.frame"},
}


def output_problem(parameter: Parameter, value: Sexp) -> str | None:
    """Why an output value does not match its declaration, or None."""
    actual = rjson.r_type(value)
    if actual in _ACCEPTS[parameter.type]:
        return None
    return f"output parameter {parameter.name!r} is {actual}, declared {parameter.type}"


# ============================================================================ OpenAPI

_NULLABLE_SCALARS = {
    "logical": {"type": "boolean", "nullable": True},
    "numeric": {"type": "number", "nullable": True},
    "integer": {"type": "integer", "nullable": True},
    "character": {"type": "string", "nullable": True},
}


def json_schema(type_: str) -> dict[str, Any]:
    """The OpenAPI 3.0 schema of a parameter of ``type_``."""
    if type_ in _NULLABLE_SCALARS:
        scalar = _NULLABLE_SCALARS[type_]
        return {"anyOf": [scalar, {"type": "array", "items": scalar}]}
    if type_ == "vector":
        return {
            "type": "array",
            "items": {"anyOf": [{"type": t, "nullable": True} for t in ("number", "string")]},
        }
    if type_ == "matrix":
        return {"type": "array", "items": {"type": "array", "items": {}}}
    assert type_ == "data.frame"
    column = {"type": "array", "items": {}}
    return {
        "anyOf": [
            {"type": "object", "additionalProperties": column},
            {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        ],
        "description": "{column: [values]} or an array of row objects",
    }


def openapi(service: Any, server_url: str) -> dict[str, Any]:
    """The OpenAPI 3 document of one service version (``service``: a ServiceDef)."""
    path = f"/api/{service.name}/{service.version}"
    inputs = {
        "type": "object",
        "properties": {p.name: json_schema(p.type) for p in service.inputs},
        "required": [p.name for p in service.inputs],
        "additionalProperties": False,
    }
    if not service.inputs:
        del inputs["required"]
    outputs = {
        "type": "object",
        "properties": {p.name: json_schema(p.type) for p in service.outputs},
    }
    result = {
        "type": "object",
        "required": ["success", "outputParameters"],
        "properties": {
            "success": {"type": "boolean"},
            "errorMessage": {"type": "string", "nullable": True},
            "consoleOutput": {"type": "string"},
            "outputParameters": {"$ref": "#/components/schemas/OutputParameters"},
            "outputFiles": {
                "type": "object",
                "properties": {
                    name: {"type": "string", "format": "byte"} for name in service.output_files
                },
            },
        },
    }
    message = {
        "type": "object",
        "properties": {"message": {"type": "string"}},
    }
    errors = {
        code: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}},
        }
        for code, text in (
            ("400", "an input is missing, unknown or of the wrong type"),
            ("401", "not authenticated"),
            ("404", "no such service"),
            ("502", "the R shell died during the call (it was replaced)"),
            ("503", "no R shell free in time (see Retry-After)"),
            ("504", "the call ran past the service's timeout and was interrupted"),
        )
    }
    consume = {
        "operationId": service.operation_id,
        "summary": service.description or f"Consume {service.name} {service.version}",
        "tags": [service.name],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InputParameters"}}
            },
        },
        "responses": {
            "200": {
                "description": "the call ran (success false: R signalled an error)",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/WebServiceResult"}
                    }
                },
            },
            **errors,
        },
    }
    batch = {
        "operationId": f"{service.operation_id}Batch",
        "summary": "Queue a batch of input records",
        "tags": [service.name],
        "parameters": [
            {
                "name": "parallelCount",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/InputParameters"},
                    }
                }
            },
        },
        "responses": {
            "202": {
                "description": "queued",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"batchExecutionId": {"type": "string"}},
                        }
                    }
                },
            },
            "400": errors["400"],
            "401": errors["401"],
            "404": errors["404"],
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": service.name,
            "version": service.version,
            "description": service.description or "",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": {path: {"post": consume}, f"{path}/batch": {"post": batch}},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {
                "InputParameters": inputs,
                "OutputParameters": outputs,
                "WebServiceResult": result,
                "Message": message,
            },
        },
    }
