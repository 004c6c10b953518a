"""Levenberg-Marquardt training of neural networks by mean squared error, like MATLAB's
``trainlm``: one framework-free loop (:mod:`._core`) and a thin adapter per framework
(:mod:`.torch`). Importing this package imports no framework; use the framework's entry point::

    from dict_minimize.torch_api import fit
"""
