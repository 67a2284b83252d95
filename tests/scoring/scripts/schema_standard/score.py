# Standard parameter types, several named parameters, and request_headers next to them.
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("text", StandardPythonParameterType("hello"))
@input_schema("count", StandardPythonParameterType(2))
@input_schema("options", StandardPythonParameterType({"upper": False}), optional=True)
@output_schema(StandardPythonParameterType({"out": "hellohello"}))
def run(text, count, options=None, request_headers=None):
    out = text * count
    if options and options.get("upper"):
        out = out.upper()
    return {"out": out, "agent": (request_headers or {}).get("User-Agent")}
