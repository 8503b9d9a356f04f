"""polyground: versioned multi-image grounding datasets and thin training over them."""

__version__ = "0.1.0"
