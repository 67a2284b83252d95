"""What the Services page shows, and where it gets it from.

The page lists the workspace's deployments: state, scoring URI, monitoring switches, keys and the
tail of each one's console log. Deployments belong to the hub's control part; the studio reads them
through :class:`DeploymentSource`, an object the hub may carry as ``deployments``. Until the hub has
one the page says there are no deployments yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class ServiceView:
    """One deployment as the Services page shows it."""

    name: str
    state: str                      # Transitioning, Healthy, Unhealthy, Failed, Deleting
    scoring_uri: str = ""
    app_insights: bool = True       # enable_app_insights
    model_data: bool = True         # collect_model_data
    keys: int = 0                   # how many keys open /score (never the keys themselves)
    console_tail: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class DeploymentSource(Protocol):
    def studio_services(self, app_ids: list[str]) -> list[ServiceView]:
        """The deployments reporting to the applications ``app_ids``."""
        ...


def deployments_of(host: object) -> DeploymentSource | None:
    """The hub's deployments, when it has any to show."""
    return getattr(host, "deployments", None)
