"""Transfer strategies: small functions that choose which parameters train, and at which learning rate.

Each strategy takes the classifier and returns optimizer parameter groups (and, for LoRA, the wrapped
model). The scratch baseline always trains every parameter of its random init: freezing random layers
would measure nothing about transfer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from warmstart.config import TrainConfig
from warmstart.errors import ConfigError

# Blocks are numbered in parameter names: encoder.layer.3., layers.3., h.3., block.3. ... Stage-based
# networks number blocks within a stage (stages.1.layers.2.), so the innermost number names the block
# and blocks are counted in the order the network holds them.
BLOCK = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def block_indices(model: Any) -> dict[str, int | None]:
    """Each parameter's block, counted from 0 at the input across the whole network (None: no block)."""
    found: dict[str, int] = {}
    indices: dict[str, int | None] = {}
    for name, _ in model.named_parameters():
        matches = list(BLOCK.finditer(name))
        if not matches:
            indices[name] = None
            continue
        block = name[: matches[-1].end()]
        indices[name] = found.setdefault(block, len(found))
    return indices


def depth(model: Any) -> int:
    """The number of blocks."""
    return len({i for i in block_indices(model).values() if i is not None})


def is_embedding(name: str, index: int | None) -> bool:
    return "embed" in name and index is None


def _groups(named: list[tuple[str, Any]], learning_rate: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups at one learning rate, without weight decay on biases and norms."""
    decay = [p for n, p in named if not n.endswith(NO_DECAY)]
    plain = [p for n, p in named if n.endswith(NO_DECAY)]
    return [
        group
        for group in (
            {"params": decay, "lr": learning_rate, "weight_decay": weight_decay},
            {"params": plain, "lr": learning_rate, "weight_decay": 0.0},
        )
        if group["params"]
    ]


def classification_layer(model: Any) -> Any:
    """The final linear layer that maps features to class logits (`classifier`, `classifier.out_proj`...)."""
    import torch

    layers = [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module.out_features == model.config.num_labels
    ]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no linear layer with {model.config.num_labels} outputs")
    return layers[-1]


def feature_extraction(model: Any, cfg: TrainConfig, learning_rate: float) -> list[dict[str, Any]]:
    """Only the final classification layer trains; everything below it is a fixed feature extractor.

    Dropout below that layer is switched off: the features are then the same on every pass, which is
    what lets them be computed once and cached (the layer's input is exactly what the cache holds).
    """
    import torch

    layer = classification_layer(model)
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in layer.parameters():
        parameter.requires_grad = True
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    return _groups([(names[id(p)], p) for p in layer.parameters()], learning_rate, cfg.weight_decay)


def full(model: Any, cfg: TrainConfig, learning_rate: float) -> list[dict[str, Any]]:
    """Every parameter trains at one rate."""
    for parameter in model.parameters():
        parameter.requires_grad = True
    return _groups(list(model.named_parameters()), learning_rate, cfg.weight_decay)


def partial_freeze(model: Any, cfg: TrainConfig, learning_rate: float) -> list[dict[str, Any]]:
    """Embeddings and the first `freeze_layers` blocks stay as pretrained; the rest trains."""
    blocks = block_indices(model)
    for name, parameter in model.named_parameters():
        index = blocks[name]
        parameter.requires_grad = not (
            is_embedding(name, index) or (index is not None and index < cfg.freeze_layers)
        )
    return _groups(
        [(n, p) for n, p in model.named_parameters() if p.requires_grad], learning_rate, cfg.weight_decay
    )


def llrd(model: Any, cfg: TrainConfig, learning_rate: float) -> list[dict[str, Any]]:
    """Layer-wise learning-rate decay: block i of L trains at rate · decay^(L − i), embeddings at
    rate · decay^(L + 1), everything above the blocks (pooler, head) at the full rate."""
    blocks = block_indices(model)
    layers = depth(model)
    by_rate: dict[float, list[tuple[str, Any]]] = {}
    for name, parameter in model.named_parameters():
        parameter.requires_grad = True
        index = blocks[name]
        if is_embedding(name, index):
            steps = layers + 1
        elif index is not None:
            steps = layers - index
        else:
            steps = 0
        by_rate.setdefault(learning_rate * cfg.layer_decay**steps, []).append((name, parameter))
    return [
        group for rate, named in sorted(by_rate.items()) for group in _groups(named, rate, cfg.weight_decay)
    ]


# Query and value projections under the names architectures give them, for models peft has no default for.
ATTENTION_PROJECTIONS = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("q", "v"))


def lora_targets(model: Any, configured: list[str]) -> list[str] | None:
    """The modules to adapt: the configured ones, peft's default for the architecture, or else the
    attention's query and value projections found by name (ViT and other vision encoders)."""
    import torch
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    if configured:
        return configured
    if model.config.model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        return None
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for pair in ATTENTION_PROJECTIONS:
        if set(pair) <= linear:
            return list(pair)
    raise ConfigError(
        f"train.strategy lora: no default modules to adapt in {type(model).__name__}; set "
        f"train.lora_target_modules to names of its linear layers (it has {', '.join(sorted(linear)[:8])})"
    )


def lora(model: Any, cfg: TrainConfig, learning_rate: float) -> tuple[Any, list[dict[str, Any]]]:
    """Low-rank adapters (peft) on the attention projections; the classification head trains in full."""
    from peft import LoraConfig, TaskType, get_peft_model

    if model.main_input_name != "input_ids":
        # peft's sequence-classification wrapper passes input_ids; an image or audio model takes the
        # generic wrapper, with its head named as a module that trains and is saved in full.
        head = {id(m): n for n, m in model.named_modules()}[id(classification_layer(model))]
        task = {"task_type": None, "modules_to_save": [head]}
    else:
        task = {"task_type": TaskType.SEQ_CLS}
    try:
        adapted = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=lora_targets(model, cfg.lora_target_modules),
                **task,
            ),
        )
    except ValueError as err:  # none of the configured modules exist
        raise ConfigError(
            f"train.strategy lora on {type(model).__name__}: {str(err).splitlines()[0]}; set "
            f"train.lora_target_modules to names of its linear layers"
        ) from None
    trainable = [(n, p) for n, p in adapted.named_parameters() if p.requires_grad]
    return adapted, _groups(trainable, learning_rate, cfg.weight_decay)


def prepare(
    model: Any, cfg: TrainConfig, init: str, learning_rate: float
) -> tuple[Any, list[dict[str, Any]]]:
    """The model to train and its optimizer groups: the configured strategy, or `full` for scratch."""
    strategy = cfg.strategy if init == "pretrained" else "full"
    if strategy == "lora":
        return lora(model, cfg, learning_rate)
    chosen = {
        "feature_extraction": feature_extraction,
        "full": full,
        "partial_freeze": partial_freeze,
        "llrd": llrd,
    }[strategy]
    return model, chosen(model, cfg, learning_rate)


def finished(model: Any) -> Any:
    """The plain classifier to save: LoRA adapters merged into the weights, so it loads like any other."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def check_strategy(cfg: TrainConfig, dataset_dir: str | Path, model_dir: str | Path) -> None:
    """Apply the pretrained arm's strategy to the model as built on the meta device (no weights, no
    memory), with the dataset's classes: what it refuses (LoRA with no modules to adapt, say) is
    refused before any training. fetch_model calls it, in a task that is not retried; finetune's
    retries are for what is transient."""
    import torch
    from transformers import AutoConfig

    from warmstart.artifacts import load_card
    from warmstart.augment import check_augment
    from warmstart.finetune.tuning import pretrained_rate
    from warmstart.inputs import auto_model

    card = load_card(dataset_dir)
    config = AutoConfig.from_pretrained(
        model_dir, num_labels=len(card["label_names"]), trust_remote_code=False
    )
    with torch.device("meta"):
        model = auto_model(card.get("modality", "text")).from_config(config)
    prepare(model, cfg, "pretrained", pretrained_rate(cfg))
    if cfg.augment:
        check_augment(card.get("modality", "text"))
