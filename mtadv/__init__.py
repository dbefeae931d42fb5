"""mtadv: multi-task fine-tuning of transformer encoders with adversarial regularization."""

__version__ = "0.1.0"
