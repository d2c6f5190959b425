"""QueryCraft: fine-tune a language model to write SQL for your own database."""

__version__ = "0.1.0"
