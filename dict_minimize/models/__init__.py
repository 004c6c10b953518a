"""Between models and parameter dicts: what to optimize, and writing the optimum back.

One module per kind of model, each importing only its own framework (this package imports
none)::

    from dict_minimize.models.torch import module_to_dict, dict_to_module
    from dict_minimize.models.keras import model_to_dict, dict_to_model, stateless_call
    from dict_minimize.models.pytree import partition, combine

Flax, Haiku and other libraries that keep parameters as nested dicts need no helper: pass the
params tree (``variables["params"]``) as ``x0_dict`` and get a tree of the same shape back.
"""
