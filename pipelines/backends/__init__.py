"""Training backends: native PyTorch (readable, probed) and TRL (the framework's own losses)."""
