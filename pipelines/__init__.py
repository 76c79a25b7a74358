"""The warmstart pipeline: ingest → [changed] fetch_model → finetune ×2 per seed → gate → [passed] register."""

from warmstart.pipelines.transfer import PIPELINE_NAME, SKIPPED_TASK, build_pipeline, compile_pipeline

__all__ = ["PIPELINE_NAME", "SKIPPED_TASK", "build_pipeline", "compile_pipeline"]
