"""Kubernetes manifests for a scaled-out scorewatch (``scorewatch k8s render``)."""
