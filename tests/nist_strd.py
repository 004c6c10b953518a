"""The NIST StRD reference problems, for the tests: a re-export of
:mod:`dict_minimize.datasets.nist_strd` (the loader and the data files ship with the package).
"""

from dict_minimize.datasets.nist_strd import (
    DATA_DIR,
    PROBLEM_NAMES,
    NistProblem,
    load,
    load_all,
    parse_dat,
)

__all__ = ["DATA_DIR", "PROBLEM_NAMES", "NistProblem", "load", "load_all", "parse_dat"]
