"""Making models: data sets (`data`), the codec's training loop and export (`train`), the context
prior's trainable network (`context_net`) and its training (`prior_training`), and measuring real
files for model cards (`evaluate`).

Nothing on the encode / decode path imports this package. This file imports nothing, so
`vqzip.training.data` loads without torch.
"""
