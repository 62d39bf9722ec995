"""Network families behind :func:`tlab.core.models.build_model`, one module per family.

Each module's ``build*`` function takes ``num_classes`` plus keyword-only options and returns
:class:`~tlab.core.architectures.parts.Parts`; :mod:`tlab.core.models` wraps them into a
``StagedModel``.
"""
