"""The version of kl-verify (``verify.__version__``; pyproject.toml reads it here)."""
__version__ = "0.2.0"
