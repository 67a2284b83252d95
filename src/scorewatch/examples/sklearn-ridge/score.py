# ruff: noqa: I001 - written the way Azure ML's seed documentation writes score.py
import json
import numpy as np
from sklearn.externals import joblib

from azureml.core.model import Model


def init():
    global model
    # retrieve the path to the model file using the model name
    model_path = Model.get_model_path('sklearn_regression_model.pkl')
    model = joblib.load(model_path)
    print("model loaded from", model_path)


def run(raw_data):
    try:
        data = json.loads(raw_data)['data']
        data = np.array(data)
        result = model.predict(data)
        print("scored", len(data), "rows")
        # you can return any datatype as long as it is JSON-serializable
        return result.tolist()
    except Exception as e:
        error = str(e)
        return error
