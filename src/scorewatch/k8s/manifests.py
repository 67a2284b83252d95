"""Kubernetes objects for scorewatch, as plain dicts: the hub, ClickHouse and each scoring service.

- **Hub**: a Deployment of ``hub_replicas`` stateless replicas (each keeps only its write-ahead log,
  on an ``emptyDir``, see docs/scaling.md for what a lost pod means), a Service, probes on
  ``/health``, a PodDisruptionBudget (one replica down at a time) and a Secret with the store URL and
  the ClickHouse password (applications and their keys live in ClickHouse).
- **ClickHouse**: an external server (``clickhouse_url``), or a StatefulSet of the official image
  with a volume, a Service and a headless Service.
- **Each service** (:class:`~scorewatch.k8s.services.ServiceInput`): a Deployment (replicas,
  requests and limits from ``cpu_cores``/``memory_gb``, ``SCORING_TIMEOUT_MS``, liveness and
  readiness on ``/health/live`` and ``/health/ready``, the Application Insights connection string
  and the service's keys from a Secret), a Service on port 80, and a HorizontalPodAutoscaler when
  autoscaling is on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from secrets import token_urlsafe
from typing import Any

from scorewatch import __version__
from scorewatch.k8s.services import ServiceInput

Manifest = dict[str, Any]
HUB_PORT = 8400
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8"  # an LTS release of the official image
PART_OF = "scorewatch"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass
class Cluster:
    """Where and how the objects run. ``clickhouse_url`` empty: a ClickHouse StatefulSet is rendered."""

    namespace: str = "scorewatch"
    hub_image: str = f"scorewatch:{__version__}"
    hub_replicas: int = 2
    hub_cpu: float = 1.0
    hub_memory_gb: float = 1.0
    clickhouse_url: str = ""
    clickhouse_password: str = ""
    clickhouse_image: str = CLICKHOUSE_IMAGE
    clickhouse_storage_gb: int = 20
    database: str = "scorewatch"

    @property
    def store_url(self) -> str:
        return self.clickhouse_url or f"clickhouse://scorewatch@scorewatch-clickhouse:8123/{self.database}"

    @property
    def hub_url(self) -> str:
        return f"http://scorewatch-hub.{self.namespace}.svc:{HUB_PORT}"


def dns_name(name: str) -> str:
    """``name`` as a Kubernetes object name (lowercase letters, digits and '-', at most 63)."""
    label = _DNS_LABEL.sub("-", name.lower()).strip("-")[:63].strip("-")
    return label or "service"


def _meta(name: str, cluster: Cluster, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": cluster.namespace, "labels": _labels(name, component), **extra}


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": PART_OF}


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _cpu(cores: float) -> str:
    return f"{max(1, round(cores * 1000))}m"


def _memory(gb: float) -> str:
    return f"{max(1, round(gb * 1024))}Mi"


def _security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def namespace(cluster: Cluster) -> list[Manifest]:
    return [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": cluster.namespace, "labels": {"app.kubernetes.io/part-of": PART_OF}}}]


# ---------------------------------------------------------------------------------------------------
# the hub

def hub(cluster: Cluster) -> list[Manifest]:
    name = "scorewatch-hub"
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": _meta(name, cluster, "hub"),
              "stringData": {"SCOREWATCH_STORE": cluster.store_url,
                             "SCOREWATCH_CLICKHOUSE_PASSWORD": cluster.clickhouse_password}}
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    container = {
        "name": "hub", "image": cluster.hub_image,
        "args": ["hub", "--host", "0.0.0.0", "--port", str(HUB_PORT)],
        "ports": [{"name": "http", "containerPort": HUB_PORT}],
        "env": [{"name": "SCOREWATCH_HOME", "value": "/var/lib/scorewatch"}],
        "envFrom": [{"secretRef": {"name": name}}],
        # a replica replays its write-ahead log before it answers: give it time to
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 90},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {"requests": {"cpu": _cpu(cluster.hub_cpu), "memory": _memory(cluster.hub_memory_gb)},
                      "limits": {"cpu": _cpu(cluster.hub_cpu * 2), "memory": _memory(cluster.hub_memory_gb * 2)}},
        "volumeMounts": [{"name": "workspace", "mountPath": "/var/lib/scorewatch"}],
        "securityContext": _security(),
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, cluster, "hub"),
        "spec": {
            "replicas": cluster.hub_replicas, "selector": {"matchLabels": _selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": _labels(name, "hub")},
                "spec": {
                    # SIGTERM: the hub stops taking items and writes what its log holds, then exits
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
                    "containers": [container],
                    "volumes": [{"name": "workspace", "emptyDir": {}}],
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, cluster, "hub"),
               "spec": {"selector": _selector(name),
                        "ports": [{"name": "http", "port": HUB_PORT, "targetPort": "http"}]}}
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, cluster, "hub"),
              "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(name)}}}
    return [secret, deployment, service, budget]


# ---------------------------------------------------------------------------------------------------
# ClickHouse

def clickhouse(cluster: Cluster) -> list[Manifest]:
    """A one-node ClickHouse StatefulSet (nothing when the cluster uses an external ClickHouse)."""
    if cluster.clickhouse_url:
        return []
    name = "scorewatch-clickhouse"
    password = {"valueFrom": {"secretKeyRef": {"name": "scorewatch-hub", "key": "SCOREWATCH_CLICKHOUSE_PASSWORD"}}}
    probe = {"httpGet": {"path": "/ping", "port": "http"}}
    container = {
        "name": "clickhouse", "image": cluster.clickhouse_image,
        "ports": [{"name": "http", "containerPort": 8123}, {"name": "native", "containerPort": 9000}],
        "env": [{"name": "CLICKHOUSE_USER", "value": "scorewatch"}, {"name": "CLICKHOUSE_PASSWORD", **password},
                {"name": "CLICKHOUSE_DB", "value": cluster.database},
                {"name": "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "value": "0"}],
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6, "initialDelaySeconds": 30},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/clickhouse"}],
    }
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(name, cluster, "store"),
        "spec": {
            "serviceName": f"{name}-headless", "replicas": 1, "selector": {"matchLabels": _selector(name)},
            "template": {"metadata": {"labels": _labels(name, "store")},
                         "spec": {"terminationGracePeriodSeconds": 60, "containers": [container]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{cluster.clickhouse_storage_gb}Gi"}}}}],
        },
    }
    ports = [{"name": "http", "port": 8123, "targetPort": "http"}]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, cluster, "store"),
               "spec": {"selector": _selector(name), "ports": ports}}
    headless = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(f"{name}-headless", cluster, "store"),
                "spec": {"clusterIP": "None", "selector": _selector(name), "ports": ports}}
    return [statefulset, service, headless]


# ---------------------------------------------------------------------------------------------------
# scoring services

def service(spec: ServiceInput, cluster: Cluster, *, connection_string: str, default_image: str) -> list[Manifest]:
    """The objects of one scoring service; ``connection_string`` is the Application Insights
    connection string its telemetry goes to (the hub's Service). With ``auth_enabled`` every replica
    takes the same two keys from a Secret (made with new keys here)."""
    name = dns_name(spec.name)
    probe = spec.probe()
    timing = {"periodSeconds": probe["period_seconds"], "timeoutSeconds": probe["timeout_seconds"],
              "successThreshold": probe["success_threshold"], "failureThreshold": probe["failure_threshold"]}
    requests = {"cpu": _cpu(spec.cpu_cores), "memory": _memory(spec.memory_gb)}
    limits = {"cpu": _cpu(spec.cpu_cores_limit or spec.cpu_cores),
              "memory": _memory(spec.memory_gb_limit or spec.memory_gb)}
    if spec.gpu_cores:
        limits["nvidia.com/gpu"] = str(spec.gpu_cores)
    env = [{"name": "SERVICE_NAME", "value": spec.name},
           {"name": "SCORING_TIMEOUT_MS", "value": str(spec.scoring_timeout_ms)},
           {"name": "SCOREWATCH_SCORING_CONCURRENCY", "value": str(spec.replica_max_concurrent_requests)},
           {"name": "SCOREWATCH_COLLECT_MODEL_DATA", "value": "1" if spec.collect_model_data else "0"},
           {"name": "SCOREWATCH_HOME", "value": "/tmp/scorewatch"}]
    if spec.model_dir:
        env.append({"name": "AZUREML_MODEL_DIR", "value": spec.model_dir})
    env += [{"name": key, "value": str(value)} for key, value in sorted(spec.environment_variables.items())]
    objects: list[Manifest] = []
    container: dict[str, Any] = {
        "name": "score", "image": spec.image or default_image,
        "args": ["serve", spec.entry_script, "--host", "0.0.0.0", "--port", str(spec.port)]
        + (["--auth"] if spec.auth_enabled else []),
        "ports": [{"name": "http", "containerPort": spec.port}],
        "env": env,
        "livenessProbe": {"httpGet": {"path": "/health/live", "port": "http"},
                          "initialDelaySeconds": probe["initial_delay_seconds"], **timing},
        # ready once init() returned: no request reaches a replica still loading its model
        "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"}, "periodSeconds": 5,
                           "timeoutSeconds": probe["timeout_seconds"], "failureThreshold": 3},
        "resources": {"requests": requests, "limits": limits},
        "securityContext": _security(),
    }
    secrets: dict[str, str] = {}
    if spec.enable_app_insights:
        secrets["APPLICATIONINSIGHTS_CONNECTION_STRING"] = connection_string
    if spec.auth_enabled:
        secrets.update(SCOREWATCH_AUTH_PRIMARY_KEY=token_urlsafe(32), SCOREWATCH_AUTH_SECONDARY_KEY=token_urlsafe(32))
    if secrets:
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": _meta(f"{name}-secrets", cluster, "scoring"), "stringData": secrets})
        container["envFrom"] = [{"secretRef": {"name": f"{name}-secrets"}}]
    replicas = spec.autoscale_min_replicas if spec.autoscale_enabled else spec.replicas
    annotations = {"scorewatch/autoscale-refresh-seconds": str(spec.autoscale_refresh_seconds)} \
        if spec.autoscale_enabled else {}
    objects.append({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, cluster, "scoring", annotations=annotations)
        if annotations else _meta(name, cluster, "scoring"),
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": _selector(name)},
            "template": {"metadata": {"labels": _labels(name, "scoring")},
                         "spec": {"terminationGracePeriodSeconds": max(30, spec.scoring_timeout_ms // 1000 + 5),
                                  "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                                  "containers": [container]}},
        },
    })
    objects.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, cluster, "scoring"),
                    "spec": {"selector": _selector(name), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    if spec.autoscale_enabled:
        objects.append({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, cluster, "scoring"),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": spec.autoscale_min_replicas, "maxReplicas": spec.autoscale_max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": spec.autoscale_target_utilization}}}]},
        })
    return objects
