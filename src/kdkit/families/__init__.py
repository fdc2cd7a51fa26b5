"""The task families: classification (kdkit.families.classification), language models (kdkit.families.lm) and
tables (kdkit.families.tabular). Each holds its config, its run, its run-directory reader and its commands, and
offers them to the command line through one interface (kdkit.families.base.Family, declared in its ``family``
module); they do not import each other.
"""
