"""The `formats.gguf.deploy` section: the deployment files written into each variant's package."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeployConfig(BaseModel):
    """Container, Kubernetes and monitoring files per variant, sized from its measured figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="Write the deployment files into each package.")
    # Exact tags (never `latest`); digests cannot be resolved offline, so a team pins them on push.
    llama_server_image: str = Field("ghcr.io/ggml-org/llama.cpp:server-b6795", description=(
        "llama.cpp's own server image (llama-server: /health, /metrics, OpenAI API), exact tag."))
    ollama_image: str = Field("docker.io/ollama/ollama:0.12.6", description="Ollama image, exact tag.")
    vllm_image: str = Field("docker.io/vllm/vllm-openai:v0.11.0", description="vLLM OpenAI server image, exact tag.")
    image_repository: str = Field("registry.local/slmforge", description=(
        "Where the variant's own image (Dockerfile in the package) is pushed; Kubernetes pulls it from there."))
    namespace: str = Field("slmforge", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Kubernetes namespace.")
    port: int = Field(8080, ge=1024, le=65535, description="Port the server listens on (non-root: above 1023).")
    memory_headroom: float = Field(1.25, ge=1.0, le=4.0, description=(
        "Limit = request x this: allocator growth and request buffers above the measured peak."))
    min_replicas: int = Field(1, ge=1, description="HorizontalPodAutoscaler minimum.")
    max_replicas: int = Field(4, ge=1, description="HorizontalPodAutoscaler maximum.")
    cpu_target_percent: int = Field(70, ge=10, le=100, description="HPA target CPU utilisation (decode is CPU-bound).")
    api_key_secret: str = Field("slmforge-api-key", description="Kubernetes Secret holding the API key (key `api-key`).")
    latency_alert_factor: float = Field(3.0, ge=1.0, description=(
        "Alert when per-token or p95 latency exceeds the measured figure times this."))
