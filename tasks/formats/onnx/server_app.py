"""An OpenAI-compatible chat server for an ONNX Runtime GenAI folder (onnxruntime-genai has none).

Why this and not another server: vLLM and llama.cpp do not run ONNX graphs, and ONNX Runtime's own
serving story (Triton's onnxruntime backend) runs single graphs without GenAI's KV-cache loop,
tokenizer or chat template. So the folder is served through its own runtime (onnxruntime_genai,
the code path the pipeline measured) behind the same FastAPI/uvicorn stack llama-cpp-python's
server uses, speaking the same chat-completions API (plain and SSE-streamed) so one client, one
smoke test and one load test check both formats. Greedy decoding only (temperature 0): a request
asking to sample is refused rather than silently answered greedily. One generation at a time.

Run: API_KEY=... python -m tasks.formats.onnx.server_app --model FOLDER --port 8080 [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse


def create_app(folder: Path, *, threads: int, api_key: str | None) -> FastAPI:
    # the runtime: in the server process, once the app is created
    from tasks.formats.onnx.runtime import GenaiModel, new_generator, as_token_array, bos_text, chat_template, prompt_text

    model = GenaiModel(folder, threads=threads)
    template, bos = chat_template(folder), bos_text(folder)
    lock = threading.Lock()
    app = FastAPI(title="slmforge ONNX Runtime GenAI server")

    def authorized(request: Request) -> None:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            raise HTTPException(status_code=401, detail="invalid or missing API key")

    def tokens(body: dict):
        """Greedy token ids and their text pieces, through the folder's own chat template."""
        text = prompt_text(model.tokenizer, template, body["messages"], bos=bos)
        prompt = [int(t) for t in model.tokenizer.encode(text)]
        max_tokens = int(body.get("max_tokens") or 256)
        with lock:
            gen = new_generator(model.model, len(prompt) + max_tokens)
            gen.append_tokens(as_token_array(prompt))
            stream = model.tokenizer.create_stream()
            for _ in range(max_tokens):
                if gen.is_done():
                    return
                gen.generate_next_token()
                token = int(gen.get_next_tokens()[0])
                if model.is_end(token):
                    return
                yield stream.decode(token)

    def checked(body: dict) -> dict:
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise HTTPException(status_code=400, detail="`messages` must be a non-empty list")
        if float(body.get("temperature") or 0.0) > 0.0:
            raise HTTPException(status_code=400, detail="this server decodes greedily only: use temperature 0")
        return body

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    def models() -> dict:
        return {"object": "list", "data": [{"id": folder.name, "object": "model", "owned_by": "slmforge"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat(request: Request):
        body = checked(await request.json())
        ident, created, name = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.get("model", folder.name)
        if body.get("stream"):
            def events():
                for piece in tokens(body):
                    chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        pieces = list(tokens(body))
        return {"id": ident, "object": "chat.completion", "created": created, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                             "finish_reason": "stop" if len(pieces) < int(body.get("max_tokens") or 256) else "length"}],
                "usage": {"completion_tokens": len(pieces)}}

    return app


def main() -> None:
    import uvicorn  # uvicorn: only when the server starts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="ONNX Runtime GenAI folder.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    app = create_app(args.model, threads=args.threads, api_key=os.environ.get("API_KEY"))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
