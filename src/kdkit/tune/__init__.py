"""`kdkit tune`: the Optuna study that any family's search runs in, its trial lines and output files, and the student
alone's share of the search.
"""
