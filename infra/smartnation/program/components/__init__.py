"""Pulumi ComponentResources of the platform, one module per component.

Every component takes its Kubernetes provider through ``opts.provider`` and hands it to each
child explicitly: the default provider is disabled (Pulumi.yaml), and one stack may address
several clusters at once, so a resource without an explicit provider is a bug.
"""

from __future__ import annotations

from typing import Any

import pulumi


def require_provider(opts: pulumi.ResourceOptions | None, component: str) -> pulumi.ProviderResource:
    """The explicit provider a component was given; refuse to fall back to the default one."""
    if opts is None or opts.provider is None:
        raise ValueError(f"{component}: pass the target cluster's Kubernetes provider as opts.provider")
    return opts.provider


def child_options(parent: pulumi.Resource, provider: pulumi.ProviderResource, **kwargs: Any) -> pulumi.ResourceOptions:
    """Options for a component's child: parented to it, on the given provider."""
    return pulumi.ResourceOptions(parent=parent, provider=provider, **kwargs)


def stateful_options(child: pulumi.ResourceOptions, protect: bool) -> pulumi.ResourceOptions:
    """Options for a child that holds data (a StatefulSet, the namespace): protected when the
    environment says so, so neither a destroy nor a rename can delete it."""
    return pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=protect))
