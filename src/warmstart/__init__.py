"""warmstart: fine-tune a pretrained model and register it only when it beats training from scratch."""

__version__ = "0.1.0"
