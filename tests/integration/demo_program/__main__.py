"""A Deployment, a LoadBalancer Service and a StatefulSet with a PVC, on one cluster.

The cluster is the stack's `kubeContext` config; the storage class is `storageClass`. Used by
`tests/integration/test_demo_program.py` and the toolchain benchmark.
"""

import pulumi
import pulumi_kubernetes as k8s

config = pulumi.Config()
context = config.require("kubeContext")
storage_class = config.require("storageClass")
namespace_name = config.get("namespace") or "smartnation-demo"

provider = k8s.Provider(f"{context}-provider", context=context, enable_server_side_apply=True)
opts = pulumi.ResourceOptions(provider=provider)

labels = {"app.kubernetes.io/name": "demo", "app.kubernetes.io/part-of": "smartnation"}
security = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
resources = {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}

ns = k8s.core.v1.Namespace(
    "demo",
    metadata={"name": namespace_name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    opts=opts,
)
ns_opts = pulumi.ResourceOptions(provider=provider, depends_on=[ns])

deployment = k8s.apps.v1.Deployment(
    "web",
    metadata={"namespace": namespace_name, "name": "web", "labels": labels},
    spec={
        "replicas": 2,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "registry.k8s.io/pause:3.10",
                        "ports": [{"containerPort": 8080}],
                        "securityContext": security,
                        "resources": resources,
                    }
                ]
            },
        },
    },
    opts=ns_opts,
)

service = k8s.core.v1.Service(
    "web",
    metadata={"namespace": namespace_name, "name": "web", "labels": labels},
    spec={"type": "LoadBalancer", "selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    opts=ns_opts,
)

db_labels = {"app.kubernetes.io/name": "demo-db", "app.kubernetes.io/part-of": "smartnation"}
statefulset = k8s.apps.v1.StatefulSet(
    "db",
    metadata={"namespace": namespace_name, "name": "db", "labels": db_labels},
    spec={
        "serviceName": "db",
        "replicas": 1,
        "selector": {"matchLabels": db_labels},
        "template": {
            "metadata": {"labels": db_labels},
            "spec": {
                "containers": [
                    {
                        "name": "db",
                        "image": "registry.k8s.io/pause:3.10",
                        "securityContext": security,
                        "resources": resources,
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ]
            },
        },
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": storage_class,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ],
    },
    opts=ns_opts,
)

pulumi.export("namespace", ns.metadata["name"])
pulumi.export("loadBalancerAddress", service.status.load_balancer.ingress[0].ip)
pulumi.export("readyReplicas", deployment.status.ready_replicas)
pulumi.export("statefulSetReady", statefulset.status.ready_replicas)
