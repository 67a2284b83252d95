"""``ComputeTarget`` and ``AksCompute`` (``azureml.core.compute``): named deployment targets.

No cluster is provisioned: a target is a name and the settings it was asked for, recorded for the
Kubernetes manifests rendered from deployments. Services deployed to it run on this machine, supervised
by the hub, like any other. Provisioning succeeds at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scorewatch.sdk.exceptions import ComputeTargetException

if TYPE_CHECKING:
    from scorewatch.sdk.workspace import Workspace

__all__ = ["AksCompute", "ComputeTarget", "ComputeTargetException"]


class ComputeTarget:
    """A named compute target of the workspace."""

    _compute_type = "AKS"

    def __new__(cls, workspace: Workspace | None = None, name: str | None = None) -> Any:
        if workspace is None or name is None:
            return super().__new__(cls)
        record = workspace._call("GET", f"/v1/computes/{name}", error=ComputeTargetException)
        target = super().__new__(AksCompute if record["type"] == "AKS" else cls)
        target._load(workspace, record)
        return target

    def __init__(self, workspace: Workspace | None = None, name: str | None = None) -> None:
        pass  # __new__ fetched it

    def _load(self, workspace: Workspace, record: dict[str, Any]) -> None:
        self.workspace = workspace
        self.name: str = record["name"]
        self.type: str = record["type"]
        self._provisioning: dict[str, Any] = record["provisioning"]
        self.provisioning_state = "Succeeded"
        self.provisioning_errors: list[Any] | None = None
        self.created_on = record.get("created_time")
        self.cluster_location = "local"
        self.agent_count = self._provisioning.get("agent_count")
        self.vm_size = self._provisioning.get("vm_size")

    @staticmethod
    def create(workspace: Workspace, name: str, provisioning_configuration: ComputeTargetProvisioningConfiguration) -> ComputeTarget:
        """Record the target ``name`` with ``provisioning_configuration``."""
        record = workspace._call("PUT", f"/v1/computes/{name}",
                                 {"type": provisioning_configuration._compute_type,
                                  "provisioning": provisioning_configuration.serialize()},
                                 error=ComputeTargetException)
        target = ComputeTarget.__new__(AksCompute)
        target._load(workspace, record)
        target.provisioning_state = "Creating"  # until wait_for_completion, as Azure shows it
        return target

    @staticmethod
    def list(workspace: Workspace) -> list[ComputeTarget]:
        out = []
        for record in workspace._call("GET", "/v1/computes", error=ComputeTargetException)["value"]:
            target = ComputeTarget.__new__(AksCompute if record["type"] == "AKS" else ComputeTarget)
            target._load(workspace, record)
            out.append(target)
        return out

    def wait_for_completion(self, show_output: bool = False, is_delete_operation: bool = False) -> None:
        state = "Succeeded"
        if show_output:
            print("Creating" if not is_delete_operation else "Deleting")
            print(f"{state}")
            print(f'{"Deprovisioning" if is_delete_operation else "Provisioning"} operation finished, '
                  f'operation "{state}"')
        self.provisioning_state = state

    def get_status(self) -> str:
        return self.provisioning_state

    def delete(self) -> None:
        self.workspace._call("DELETE", f"/v1/computes/{self.name}", error=ComputeTargetException)
        self.provisioning_state = "Deleting"

    detach = delete

    def serialize(self) -> dict[str, Any]:
        return {"name": self.name, "computeType": self.type, "provisioningState": self.provisioning_state,
                "provisioningErrors": self.provisioning_errors, "location": self.cluster_location,
                "properties": self._provisioning}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name}, type={self.type})"


class ComputeTargetProvisioningConfiguration:
    _compute_type = "AKS"

    def __init__(self, **settings: Any) -> None:
        self._settings = {k: v for k, v in settings.items() if v is not None}
        for key, value in settings.items():
            setattr(self, key, value)

    def serialize(self) -> dict[str, Any]:
        return dict(self._settings)

    def validate_configuration(self) -> None:
        count = self._settings.get("agent_count")
        if count is not None and (not isinstance(count, int) or count <= 0):
            raise ComputeTargetException("Invalid configuration, agent_count must be a positive integer.")


class AksCompute(ComputeTarget):
    """An Azure Kubernetes Service target: here, a named label for manifests."""

    class ClusterPurpose:
        FAST_PROD = "FastProd"
        DEV_TEST = "DevTest"

    @staticmethod
    def provisioning_configuration(agent_count: int | None = None, vm_size: str | None = None,
                                   ssl_cname: str | None = None, ssl_cert_pem_file: str | None = None,
                                   ssl_key_pem_file: str | None = None, location: str | None = None,
                                   vnet_resourcegroup_name: str | None = None, vnet_name: str | None = None,
                                   subnet_name: str | None = None, service_cidr: str | None = None,
                                   dns_service_ip: str | None = None, docker_bridge_cidr: str | None = None,
                                   cluster_purpose: str | None = None, load_balancer_type: str | None = None,
                                   load_balancer_subnet: str | None = None) -> ComputeTargetProvisioningConfiguration:
        config = ComputeTargetProvisioningConfiguration(
            agent_count=agent_count, vm_size=vm_size, ssl_cname=ssl_cname, location=location,
            vnet_resourcegroup_name=vnet_resourcegroup_name, vnet_name=vnet_name, subnet_name=subnet_name,
            service_cidr=service_cidr, dns_service_ip=dns_service_ip, docker_bridge_cidr=docker_bridge_cidr,
            cluster_purpose=cluster_purpose, load_balancer_type=load_balancer_type,
            load_balancer_subnet=load_balancer_subnet)
        config.validate_configuration()
        return config

    @staticmethod
    def attach_configuration(resource_group: str | None = None, cluster_name: str | None = None,
                             resource_id: str | None = None, cluster_purpose: str | None = None) -> ComputeTargetProvisioningConfiguration:
        return ComputeTargetProvisioningConfiguration(resource_group=resource_group, cluster_name=cluster_name,
                                                      resource_id=resource_id, cluster_purpose=cluster_purpose)

    @staticmethod
    def attach(workspace: Workspace, name: str, attach_configuration: ComputeTargetProvisioningConfiguration) -> ComputeTarget:
        return ComputeTarget.create(workspace, name, attach_configuration)
