"""Network families behind :func:`tlab.models.build_model`, one module per family.

Each module's ``build*`` function takes ``num_classes`` plus keyword-only options and returns
:class:`~tlab.architectures.parts.Parts`; :mod:`tlab.models` wraps them into a ``StagedModel``.
"""
