# A @rawhttp example: the script sees the whole request (method, headers, files) and answers with an
# AMLResponse of its choosing, as Azure ML's rawhttp samples do.
import io
import os

import numpy as np
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    global centroids, labels
    model = np.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "centroids.npz"))
    centroids, labels = model["centroids"], list(model["labels"])


@rawhttp
def run(request: AMLRequest):
    if request.method == "GET":
        return AMLResponse({"labels": labels, "features": int(centroids.shape[1])}, 200, json_str=True)
    if request.method != "POST":
        return AMLResponse("method not allowed", 405)
    # CSV rows either as the raw body (text/csv) or as an uploaded file field named "file".
    upload = request.files.get("file")
    raw = upload.read() if upload is not None else request.get_data(cache=False)
    try:
        rows = np.loadtxt(io.BytesIO(raw), delimiter=",", ndmin=2)
    except ValueError as e:
        return AMLResponse({"error": f"body is not numeric CSV: {e}"}, 400, json_str=True)
    if rows.shape[1] != centroids.shape[1]:
        return AMLResponse({"error": f"expected {centroids.shape[1]} columns"}, 400, json_str=True)
    distances = ((rows[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    nearest = [labels[i] for i in distances.argmin(axis=1)]
    return AMLResponse({"labels": nearest}, 200, {"X-Rows": str(len(nearest))}, json_str=True)
