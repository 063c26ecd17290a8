"""Dockerfile and compose file of one GGUF variant (llama.cpp's server and Ollama).

The build context is the package folder itself (the GGUF sits next to the Dockerfile). The API key
is a file (a Docker secret), never an environment variable or a build argument.
"""

from __future__ import annotations

import yaml

from tasks.formats.gguf.deploy.config import DeployConfig
from tasks.formats.gguf.deploy.sizing import Sizing

UID = 10001  # a high, non-root uid that exists nowhere else on the host (checkov CKV_K8S_40)


def dockerfile(gguf_name: str, sizing: Sizing, config: DeployConfig) -> str:
    p = config.port
    return f"""# llama.cpp's server with this variant's GGUF baked in. Build from this folder:
#   docker build -t {config.image_repository}/<name>:<tag> .
FROM {config.llama_server_image}
COPY --chown={UID}:{UID} {gguf_name} /models/model.gguf
USER {UID}:{UID}
EXPOSE {p}
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\
  CMD ["curl", "-fsS", "http://127.0.0.1:{p}/health"]
ENTRYPOINT ["/app/llama-server"]
CMD ["--model", "/models/model.gguf", "--host", "0.0.0.0", "--port", "{p}", "--ctx-size", "{sizing.n_ctx}", \\
     "--threads", "{sizing.cpu_request_m // 1000}", "--metrics", "--api-key-file", "/run/secrets/api_key"]
"""


def compose(gguf_name: str, modelfile_tag: str, sizing: Sizing, config: DeployConfig) -> str:
    """Two services: the image built from the Dockerfile, and Ollama creating the model from the Modelfile."""
    limit = f"{sizing.limit_bytes // (1024 * 1024)}M"
    hardening = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}
    services = {
        "llama-server": {
            "build": {"context": "."}, "image": f"{config.image_repository}/{modelfile_tag.replace(':', '-')}:local",
            "user": f"{UID}:{UID}", **hardening, "ports": [f"127.0.0.1:{config.port}:{config.port}"],
            "secrets": ["api_key"], "tmpfs": ["/tmp"], "mem_limit": limit,
            "healthcheck": {"test": ["CMD", "curl", "-fsS", f"http://127.0.0.1:{config.port}/health"],
                            "interval": "30s", "timeout": "5s", "retries": 3, "start_period": "60s"},
        },
        "ollama": {
            "image": config.ollama_image, "user": f"{UID}:{UID}", **hardening,
            "environment": {"HOME": "/data", "OLLAMA_MODELS": "/data/models", "OLLAMA_HOST": "0.0.0.0:11434"},
            "ports": ["127.0.0.1:11434:11434"], "mem_limit": limit, "tmpfs": ["/tmp"],
            "volumes": ["./:/package:ro", "ollama-data:/data"],
            # `ollama create` needs the server running: start it, create the model, then wait on it.
            "entrypoint": ["/bin/sh", "-c",
                           f"ollama serve & until ollama list >/dev/null 2>&1; do sleep 1; done; "
                           f"ollama create {modelfile_tag} -f /package/Modelfile && wait"],
            "healthcheck": {"test": ["CMD", "ollama", "show", modelfile_tag], "interval": "30s",
                            "timeout": "10s", "retries": 5, "start_period": "120s"},
        },
    }
    document = {"services": services, "volumes": {"ollama-data": {}},
                "secrets": {"api_key": {"file": "./api_key.txt"}}}
    header = ("# docker compose up -d   (put the API key in ./api_key.txt first; it is mounted as a secret)\n"
              f"# gguf: {gguf_name}; memory limit from measured peak RSS + KV cache at n_ctx={sizing.n_ctx}\n")
    return header + yaml.safe_dump(document, sort_keys=False)
