# Azure ML's inference-schema sample style: numpy input, numpy output.
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global weights
    weights = np.array([1.0, 2.0, 3.0])


@input_schema("data", NumpyParameterType(np.array([[0.1, 1.2, 2.3]])))
@output_schema(NumpyParameterType(np.array([4.4])))
def run(data):
    assert isinstance(data, np.ndarray)
    return data @ weights
