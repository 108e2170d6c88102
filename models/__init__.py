"""Shipped models (`<name>.safetensors` + `<name>.json` model card), installed as `vqzip.models`."""
