"""Hallucination labels for a run's output tokens: CHAIR (`chair`), POPE (`pope`), human (`human`), joined onto
tokens by character span (`join`) and written as `<run>/labels/<labelset>.parquet` + `.json` (`label_run`).

Entry points: `label_run.label_chair / label_pope / label_human`; `chair.ChairExtractor` for caption text.
"""
