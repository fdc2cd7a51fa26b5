"""The run directory: RunDir and the name of every file in it (rundir), its guard (one run at a time, no silent mix
of an old and a new run) and what a trained model needs besides its weights (meta).
"""
