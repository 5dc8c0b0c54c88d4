"""Benchmark sample generation for `qrag data`: bAbI qa1-qa5 facts, BabiLong-style novel
haystacks, RULER-style needle and variable-tracking tasks, and the versioned sample file format.

Modules: `babi` (world simulation and replay), `haystack` (novel sentences and the train/test
novel split), `splice` (facts into a background), `ruler` (needle tasks), `samples` (file format),
`generate` (settings -> samples), `validate` (generator vs the real bAbI qa1 file).
"""
