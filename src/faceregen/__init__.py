"""faceregen: regenerate faces from semantic label maps with a reference face's appearance."""

__version__ = "0.1.0"
