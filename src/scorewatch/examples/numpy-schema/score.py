# An inference-schema example in the style of Azure ML's samples: numpy in, numpy out, swagger for free.
import os

import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global weights, bias
    # AZUREML_MODEL_DIR is the folder given with --model-dir (as in an Azure deployment).
    model = np.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "linear.npz"))
    weights, bias = model["weights"], float(model["bias"])


@input_schema("data", NumpyParameterType(np.array([[5.1, 3.5, 1.4, 0.2]])))
@output_schema(NumpyParameterType(np.array([1.23])))
def run(data):
    # `data` arrives as a float ndarray of shape (rows, 4); a bad payload never gets here (400).
    return data @ weights + bias
