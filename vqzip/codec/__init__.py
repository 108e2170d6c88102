"""Pixels to tokens and back: the encoder / decoder networks (`nets`), the codec that joins them (`model`)
and the quantizers (`quantizers/`, one file each).

Knows nothing of files or bytes: imports no `vqzip.coding.container`, `vqzip.coding.entropy`, training,
bench or CLI code. Import the modules themselves (`vqzip.codec.model`); this file imports nothing.
"""
