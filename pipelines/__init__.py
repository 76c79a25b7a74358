"""The warmstart pipeline: ingest → fetch_model → finetune ×2 → gate → [passed] register."""

from warmstart.pipelines.transfer import PIPELINE_NAME, build_pipeline, compile_pipeline

__all__ = ["PIPELINE_NAME", "build_pipeline", "compile_pipeline"]
