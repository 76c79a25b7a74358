"""Transfer strategies: small functions that choose which parameters train, and at which learning rate.

Each strategy takes the classifier and returns optimizer parameter groups (and, for LoRA, the wrapped
model). The scratch baseline always trains every parameter of its random init: freezing random layers
would measure nothing about transfer.
"""

from __future__ import annotations

import re
from typing import Any

from warmstart.config import TrainConfig

# Transformer blocks are numbered in parameter names: encoder.layer.3., layers.3., h.3., block.3. ...
BLOCK = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def block_index(name: str) -> int | None:
    match = BLOCK.search(name)
    return int(match.group(1)) if match else None


def depth(model: Any) -> int:
    """The number of transformer blocks, read from the parameter names."""
    indices = [block_index(name) for name, _ in model.named_parameters()]
    return max((i for i in indices if i is not None), default=-1) + 1


def is_embedding(name: str) -> bool:
    return "embed" in name and block_index(name) is None


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
    for name, parameter in model.named_parameters():
        index = block_index(name)
        parameter.requires_grad = not (
            is_embedding(name) or (index is not None and index < cfg.freeze_layers)
        )
    return _groups(
        [(n, p) for n, p in model.named_parameters() if p.requires_grad], learning_rate, cfg.weight_decay
    )


def llrd(model: Any, cfg: TrainConfig, learning_rate: float) -> list[dict[str, Any]]:
    """Layer-wise learning-rate decay: block i of L trains at rate · decay^(L − i), embeddings at
    rate · decay^(L + 1), everything above the blocks (pooler, head) at the full rate."""
    layers = depth(model)
    by_rate: dict[float, list[tuple[str, Any]]] = {}
    for name, parameter in model.named_parameters():
        parameter.requires_grad = True
        index = block_index(name)
        if is_embedding(name):
            steps = layers + 1
        elif index is not None:
            steps = layers - index
        else:
            steps = 0
        by_rate.setdefault(learning_rate * cfg.layer_decay**steps, []).append((name, parameter))
    return [
        group for rate, named in sorted(by_rate.items()) for group in _groups(named, rate, cfg.weight_decay)
    ]


def lora(model: Any, cfg: TrainConfig, learning_rate: float) -> tuple[Any, list[dict[str, Any]]]:
    """Low-rank adapters (peft) on the attention projections; the classification head trains in full."""
    from peft import LoraConfig, TaskType, get_peft_model

    adapted = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules or None,
        ),
    )
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
