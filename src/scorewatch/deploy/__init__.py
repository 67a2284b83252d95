"""Deployments: services the hub runs and supervises, the models they serve, and the control API.

``records`` (the typed records), ``store`` (where they are kept), ``models`` (registered models),
``launch`` (starting one service process), ``supervisor`` (reconciling records into processes),
``console`` (services' consoles into the store), ``api`` (the control API), ``cli`` (its commands).
"""
