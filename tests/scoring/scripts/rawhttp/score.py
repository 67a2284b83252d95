# Azure ML's @rawhttp sample style: the whole request in, an AMLResponse out.
import json

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    assert isinstance(request, AMLRequest)
    if request.method == "GET":
        return AMLResponse({"args": request.args.to_dict(), "path": request.full_path}, 200, json_str=True)
    if request.method == "OPTIONS":
        return AMLResponse("", 204, {"Access-Control-Allow-Origin": "*"})
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("multipart/form-data"):
        files = {name: len(f.read()) for name, f in request.files.items()}
        return {"files": files, "form": request.form.to_dict()}
    if content_type == "application/octet-stream":
        data = request.get_data(False)
        return AMLResponse(data[::-1], 201, {"X-Reversed": str(len(data))})
    if content_type == "application/json":
        payload = request.get_json()
        if "teapot" in payload:
            return AMLResponse(json.dumps({"error": "short and stout"}), 418, {"Content-Type": "application/json"})
        return {"echo": payload}
    return AMLResponse("unsupported", 400)
