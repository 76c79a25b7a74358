"""`warmstart serve` under load, against the same model called directly from Python.

Runs the demo untuned (so the registry has a version of the fine-tuned MiniLM), starts
`warmstart serve` on loopback, and sends the SST-2 dev sentences as single-sentence v1 requests from
1, 8 and 32 concurrent clients. The reference outside the project is the same model in a transformers
`pipeline("text-classification")` on this process, one sentence per call (what a hand-written endpoint
would do) and 32 per call. Writes bench/results/serve_throughput.json.

    python bench/serve_throughput.py [--rows 512]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()

    import torch
    from support.serving import serving

    from warmstart.config import Config
    from warmstart.registry import Registry

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "warmstart"),
            *("run", "--workdir", str(work)),
            *("--set", "tune.enabled=false"),
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    name = Config().registry.name
    registry = Registry(str(work / "registry"))
    version = registry.alias(name, "champion")
    if version is None:
        raise SystemExit("the short demo run registered nothing; nothing to serve")
    sentences = [
        line.split("\t")[0]
        for line in (ROOT / "src" / "warmstart" / "demo" / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    ][: args.rows]

    results: dict = {"rows": len(sentences), "model": name, "version": version, "server": {}, "direct": {}}
    with serving("--registry", str(work / "registry"), "--name", name, log=work / "serve.log") as url:
        endpoint = f"{url}/v1/models/{name}:predict"
        post(endpoint, {"instances": sentences[:8]})  # warm-up
        for clients in (1, 8, 32):
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda s: post(endpoint, {"instances": [s]}), sentences))
            seconds = time.perf_counter() - started
            results["server"][f"{clients} clients, 1 row per request"] = {
                "rows_per_second": round(len(sentences) / seconds, 1),
                "mean_latency_ms": round(1000 * seconds * clients / len(sentences), 1),
            }
        started = time.perf_counter()
        for start in range(0, len(sentences), 32):
            post(endpoint, {"instances": sentences[start : start + 32]})
        results["server"]["1 client, 32 rows per request"] = {
            "rows_per_second": round(len(sentences) / (time.perf_counter() - started), 1)
        }

    from transformers import pipeline

    model_dir = registry.download_version(name, version, work / "direct")
    classify = pipeline("text-classification", model=str(model_dir), device=-1)
    classify(sentences[:8])
    for batch in (1, 32):
        started = time.perf_counter()
        classify(sentences, batch_size=batch, truncation=True, max_length=128)
        results["direct"][f"transformers pipeline, batch {batch}"] = {
            "rows_per_second": round(len(sentences) / (time.perf_counter() - started), 1)
        }
    results["machine"] = {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    out = ROOT / "bench" / "results" / "serve_throughput.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
