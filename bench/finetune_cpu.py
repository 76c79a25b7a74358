"""Fine-tuning on the CPU: warmstart's finetune against the HF Trainer setups a user would copy instead.

All three fine-tune the real all-MiniLM-L6-v2 on the same rows (the demo's SST-2 sample as warmstart's
ingest splits it: 810 training phrases) for the same 3 epochs, batch 32, learning rate 5e-5, warmup,
weight decay and seed, and are tested on the 872 SST-2 dev sentences:

- (a) `hf_glue_style`: the `run_glue.py` recipe: pad every text to 128 tokens, stock Trainer, fp32;
- (b) `hf_tuned`: the same Trainer with dynamic padding and length-grouped batches;
- (c) `warmstart`: warmstart's finetune (pretrained arm), learning curve included; and, for reference,
- `hf_tuned_bf16`: (b) with bf16 autocast, which warmstart's `precision: auto` picks on a CPU with
  AVX-512 BF16 or AMX instructions.

Throughput is samples per second after the first tenth of the steps, evaluations left out (the same
meter for all three); wall time is the whole fine-tuning call, tokenizing and testing included.

Usage: python bench/finetune_cpu.py [EPOCHS]   (writes bench/results/finetune_cpu.json)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from hf_baseline import GLUE_STYLE, TUNED, TUNED_BF16, train_and_test
from machine import describe, write_result

from warmstart.config import Config
from warmstart.fetch_model.sources import fetch_model
from warmstart.finetune.launch import finetune
from warmstart.ingest.dataset import ingest

EPOCHS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
RESULTS = Path(__file__).resolve().parent / "results" / "finetune_cpu.json"


def main() -> None:
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    # One rate, as the Trainer setups train: the learning-rate search is measured in demo_end_to_end.py.
    cfg = Config.from_dict({"train": {"epochs": EPOCHS}, "tune": {"enabled": False}})
    train_cfg = cfg.train
    runs = {}
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        ingest(cfg.data, work / "data")
        fetch_model(cfg.model, work / "base")

        started = time.perf_counter()
        summary = finetune(
            cfg, "pretrained", work / "data", work / "base", work / "ws" / "m", work / "ws" / "e"
        )
        runs["warmstart"] = {
            "samples_per_second": summary["train_samples_per_second"],
            "train_seconds": summary["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 2),
            "test_accuracy": round(summary["test_metrics"]["accuracy"], 4),
            "learning_curve_points": len(summary["learning_curve"]),
        }
        print(runs["warmstart"], flush=True)

        def rows(split: str) -> dict[str, list]:
            table = pq.read_table(work / "data" / f"{split}.parquet", columns=["text", "label"])
            return {"text": table.column("text").to_pylist(), "label": table.column("label").to_pylist()}

        train_rows, test_rows = rows("train"), rows("test")
        tokenizer = AutoTokenizer.from_pretrained(work / "base")
        for setup in (TUNED, TUNED_BF16, GLUE_STYLE):
            transformers.set_seed(train_cfg.seed)  # the same classification-head init as warmstart's
            model = AutoModelForSequenceClassification.from_pretrained(
                work / "base", num_labels=2, use_safetensors=True
            )
            runs[setup.name] = train_and_test(
                setup,
                model,
                tokenizer,
                train_rows,
                test_rows,
                max_length=cfg.model.max_length,
                batch_size=train_cfg.batch_size,
                learning_rate=train_cfg.learning_rate,
                seed=train_cfg.seed,
                epochs=EPOCHS,
            )
            print(runs[setup.name], flush=True)
    ws = runs["warmstart"]["samples_per_second"]
    precision = summary["precision"]
    best = max(run["test_accuracy"] for run in runs.values())
    result = {
        "benchmark": "finetune_cpu",
        "model": "all-MiniLM-L6-v2 (22.7M parameters), full fine-tuning",
        "data": "demo SST-2 sample: 810 training phrases after the validation split; 872 SST-2 dev sentences",
        "epochs": EPOCHS,
        "batch_size": train_cfg.batch_size,
        "machine": describe(),
        "warmstart_precision": precision,
        "runs": runs,
        "speedup_vs_glue_style": round(ws / runs["hf_glue_style"]["samples_per_second"], 2),
        "speedup_vs_tuned": round(ws / runs["hf_tuned"]["samples_per_second"], 2),
        "accuracy_gap_to_best_points": round(100 * (best - runs["warmstart"]["test_accuracy"]), 2),
        "targets": "speedup_vs_glue_style >= 3, speedup_vs_tuned >= 1.3, accuracy within 0.5 points of the best",
    }
    write_result(RESULTS, result)


if __name__ == "__main__":
    main()
