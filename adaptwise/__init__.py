"""adaptwise: decide how to adapt an LLM to your domain, then prove it on your own eval set."""

__version__ = "0.1.0"
