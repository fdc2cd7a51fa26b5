"""The run directory: its guard (one run at a time, no silent mix of an old and a new run) and what a trained model
needs besides its weights (meta).
"""
