"""Tokens to bytes and back, bit-exact: the `.vqz` layout (`container`, no torch), range coding
(`entropy`, constriction), the priors that give both sides the same integer tables (`priors`) and the
integer context network behind format version 2 (`context`).

Imports no training, bench or CLI code, and no torch: numpy and constriction are all that coding and
decoding need (the context network's trainable form is vqzip.training.context_net). This file imports
nothing, so `vqzip.coding.container` needs not even numpy.
"""
