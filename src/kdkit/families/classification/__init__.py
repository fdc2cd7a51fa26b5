"""Classification runs: the YAML config (RunConfig), the pipeline that trains the teacher, the student alone and the
distilled student and measures all three, the plans that hand a scheme what it needs, the demo configs, `kdkit tune`
of a classification config and `kdkit evaluate --cost-only`.
"""
