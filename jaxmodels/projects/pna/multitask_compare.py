"""Compares finished PNA multitask runs (Corso et al., NeurIPS 2020, sec. 4.1): what
``train/pna_multitask_compare.py`` runs.

The table and the bar plot are ``multitask.compare_runs``; this module gives them the launcher's
``(config, workdir)`` shape, the config holding the binary's flags (``runs``, ``split``) and the
workdir the ``--out`` folder.
"""
from __future__ import annotations

from jaxmodels.projects.pna import multitask


def compare(config, workdir: str) -> str:
    """Writes ``comparison.md`` and ``comparison.png`` of ``config.runs`` into ``workdir``; returns the table."""
    return multitask.compare_runs(list(config.runs), workdir, config.split)


def describe(workdir: str, table: str) -> str:
    """The console summary: the markdown table itself, as written to ``<workdir>/comparison.md``."""
    return table
