"""The scoring service (``scorewatch serve``): Azure ML entry scripts served over HTTP.

Modules: ``cli`` (the command), ``server`` (uvicorn, workers), ``config`` (what a worker is told),
``app`` (a worker's lifecycle and routes), ``endpoint`` (``/score``), ``runner`` (the threads ``run()``
executes on), ``entry`` (loading and calling ``score.py``), ``schema`` (inference-schema and swagger),
``auth`` (keys), ``metrics`` (``/metrics``), ``monitor`` (the seam with telemetry) and ``compat`` (the
``azureml.*`` modules scripts import).
"""
