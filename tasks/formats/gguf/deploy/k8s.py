"""Kubernetes manifests of one variant: llama.cpp's server on CPU, and vLLM on a GPU host.

Requests come from measured figures (tasks.formats.gguf.deploy.sizing); probes hit the server's health
endpoint; every container runs non-root with a read-only root filesystem, no privilege
escalation and no capabilities; the API key is a file from a Secret.
"""

from __future__ import annotations

import yaml

from tasks.formats.gguf.deploy.config import DeployConfig
from tasks.formats.gguf.deploy.containers import UID
from tasks.formats.gguf.deploy.sizing import MI, Sizing

# Checks a team cannot satisfy from a file generated offline, with the reason checkov records.
SKIPS = {"checkov.io/skip1": "CKV_K8S_43=the image digest is resolved when the image is pushed, not offline"}


def _meta(name: str, config: DeployConfig, **extra) -> dict:
    return {"name": name, "namespace": config.namespace, "labels": {"app.kubernetes.io/name": name}, **extra}


def _container_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _probe(path: str, port: int, initial: int) -> dict:
    return {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": initial, "periodSeconds": 10,
            "timeoutSeconds": 5, "failureThreshold": 3}


def _deployment(name: str, container: dict, volumes: list[dict], config: DeployConfig, annotations: dict) -> dict:
    pod = {"automountServiceAccountToken": False, "securityContext": {
        "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"}}, "containers": [container], "volumes": volumes}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, config, annotations=annotations),
            "spec": {"replicas": config.min_replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}, "annotations": annotations},
                                  "spec": pod}}}


def _service(name: str, config: DeployConfig) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, config),
            "spec": {"selector": {"app.kubernetes.io/name": name},
                     "ports": [{"name": "http", "port": config.port, "targetPort": config.port}]}}


def _hpa(name: str, config: DeployConfig) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(name, config),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": config.min_replicas, "maxReplicas": max(config.max_replicas, config.min_replicas),
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": config.cpu_target_percent}}}]}}


def _network_policy(name: str, config: DeployConfig) -> dict:
    """Ingress only to the server port, from pods of the namespace; no egress (weights are in the image)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(name, config),
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": config.port}]}],
                     "egress": []}}


def llama_server_manifests(name: str, image: str, sizing: Sizing, config: DeployConfig) -> str:
    p = config.port
    container = {
        "name": "llama-server", "image": image, "imagePullPolicy": "Always",
        "args": ["--model", "/models/model.gguf", "--host", "0.0.0.0", "--port", str(p), "--ctx-size", str(sizing.n_ctx),
                 "--threads", str(sizing.cpu_request_m // 1000), "--metrics", "--api-key-file", "/run/secrets/api_key"],
        "ports": [{"name": "http", "containerPort": p}],
        "resources": {"requests": {"cpu": f"{sizing.cpu_request_m}m", "memory": f"{sizing.request_bytes // MI}Mi"},
                      "limits": {"cpu": f"{sizing.cpu_request_m}m", "memory": f"{sizing.limit_bytes // MI}Mi"}},
        "readinessProbe": _probe("/health", p, 5), "livenessProbe": _probe("/health", p, 30),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "api-key", "mountPath": "/run/secrets", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": "api-key", "secret": {"secretName": config.api_key_secret, "items": [
        {"key": "api-key", "path": "api_key"}]}}, {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    docs = [_deployment(name, container, volumes, config, SKIPS), _service(name, config), _hpa(name, config),
            _network_policy(name, config)]
    return _dump(docs, f"llama.cpp server, {sizing.request_bytes // MI}Mi requested = measured peak RSS "
                       f"{sizing.peak_rss_bytes // MI}Mi + f16 KV cache {sizing.kv_cache_bytes // MI}Mi at n_ctx={sizing.n_ctx}")


def vllm_manifests(name: str, gguf_name: str, sizing: Sizing, config: DeployConfig, *, models_claim: str) -> str:
    """vLLM on one GPU, loading the GGUF (vLLM's GGUF support: single file, tokenizer from the HF files
    shipped in the package's tokenizer/ folder). The package folder sits on a PersistentVolumeClaim."""
    p = config.port
    container = {
        "name": "vllm", "image": config.vllm_image, "imagePullPolicy": "Always",
        "args": ["--model", f"/models/{gguf_name}", "--tokenizer", "/models/tokenizer", "--host", "0.0.0.0",
                 "--port", str(p), "--max-model-len", str(sizing.n_ctx)],
        # vLLM reads its key only from the environment or the command line: the environment, from a Secret.
        "env": [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": config.api_key_secret, "key": "api-key"}}},
                {"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HOME", "value": "/tmp"}],
        "ports": [{"name": "http", "containerPort": p}],
        "resources": {"requests": {"cpu": "2", "memory": f"{sizing.limit_bytes // MI + 2048}Mi", "nvidia.com/gpu": 1},
                      "limits": {"cpu": "4", "memory": f"{sizing.limit_bytes // MI + 4096}Mi", "nvidia.com/gpu": 1}},
        "readinessProbe": _probe("/health", p, 30), "livenessProbe": _probe("/health", p, 120),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    }
    volumes = [{"name": "models", "persistentVolumeClaim": {"claimName": models_claim, "readOnly": True}},
               {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}, {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    skips = {**SKIPS, "checkov.io/skip2": "CKV_K8S_35=vLLM takes its API key only from the environment"}
    docs = [_deployment(name, container, volumes, config, skips), _service(name, config), _hpa(name, config),
            _network_policy(name, config)]
    return _dump(docs, "vLLM on a GPU host (nodes with nvidia.com/gpu); memory: host-side buffers above the weights")


def _dump(docs: list[dict], comment: str) -> str:
    return f"# {comment}\n" + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)
