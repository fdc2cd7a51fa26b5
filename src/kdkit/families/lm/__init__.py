"""Language-model runs: the LM config, the three-row pipeline, its run directory, verdict, diagnosis signals, report,
`kdkit tune` of an LM config, the demo and the evaluate / export / predict commands. The low-level parts they build
on (generation, the top-k cache, vocabulary checks, encodings) live in kdkit.lm.
"""
