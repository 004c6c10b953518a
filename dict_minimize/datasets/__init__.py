"""Reference problems that ship with dict_minimize, read from package data (no downloads).

:mod:`dict_minimize.datasets.nist_strd`
    The 27 NIST StRD nonlinear regression problems with certified parameters and models.
"""
