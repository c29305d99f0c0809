"""`edgekd run`: data -> teacher -> budget search -> distill + scratch baseline -> export -> convert -> bench ->
report."""

from .config import PipelineConfig, load_pipeline_config
from .run import run_pipeline

__all__ = ["PipelineConfig", "load_pipeline_config", "run_pipeline"]
