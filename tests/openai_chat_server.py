"""A small OpenAI-compatible server around a transformers model, for tests that need a
*chat* teacher (what a hosted model, Ollama or vLLM offer): ``/v1/models``,
``/v1/chat/completions`` (the tokenizer's chat template) and ``/v1/completions`` (raw
prompts), with token usage, and ``/stats`` (requests answered). One generation at a time.

    python -m tests.openai_chat_server --model <folder> --port 8123
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="teacher")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    lock = threading.Lock()
    stats = {"chat": 0, "completions": 0}

    def generate(prompt: str, max_tokens: int) -> tuple[str, int, int]:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with lock, torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        return (tokenizer.decode(new, skip_special_tokens=True), ids["input_ids"].shape[1],
                len(new))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:  # quiet
            pass

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self.reply(200, {"object": "list", "data": [{"id": args.name,
                                                             "object": "model"}]})
            elif self.path == "/stats":
                self.reply(200, stats)
            else:
                self.reply(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            max_tokens = int(body.get("max_tokens") or 64)
            if self.path == "/v1/chat/completions":
                prompt = tokenizer.apply_chat_template(body["messages"], tokenize=False,
                                                       add_generation_prompt=True)
                text, prompt_tokens, tokens = generate(prompt, max_tokens)
                stats["chat"] += 1
                choice = {"index": 0, "message": {"role": "assistant", "content": text},
                          "finish_reason": "stop"}
            elif self.path == "/v1/completions":
                text, prompt_tokens, tokens = generate(body["prompt"], max_tokens)
                stats["completions"] += 1
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
            else:
                self.reply(404, {"error": {"message": "not found"}})
                return
            self.reply(200, {"object": "chat.completion", "model": args.name,
                             "choices": [choice],
                             "usage": {"prompt_tokens": prompt_tokens,
                                       "completion_tokens": tokens,
                                       "total_tokens": prompt_tokens + tokens}})

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
