"""itool-ray: iterative reinforced tool-use fine-tuning (iTool) on Ray."""

__version__ = "0.1.0"
