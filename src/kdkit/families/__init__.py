"""The task families: classification (kdkit.families.classification), language models (kdkit.families.lm) and
tables (kdkit.families.tabular). Each holds its config, its run, its run-directory reader and its commands; they do not
import each other.
"""
