# Pandas input, standard output, and a second named parameter with a default.
import pandas as pd
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

sample = pd.DataFrame({"age": [30], "income": [1000.0]})


def init():
    pass


@input_schema("frame", PandasParameterType(sample))
@input_schema("scale", StandardPythonParameterType(1.0))
@output_schema(StandardPythonParameterType([1.0]))
def run(frame, scale=1.0):
    assert isinstance(frame, pd.DataFrame)
    return (frame["income"] / frame["age"] * scale).tolist()
