"""Helpers shared by the methods, the metrics and the integrations (private).

``checks`` (argument validation), ``meta`` (MONAI ``MetaTensor`` in and out), ``spatial``
(resizing, min-max normalisation), ``targets`` (per-example targets and class scores) and
``engine`` (every chunked forward over perturbed inputs, and the progress bar).
They sit below ``attr`` and ``metrics``: every layer may import them, and nothing outside
``captum_medcam.attr`` imports ``attr``'s private modules (a ruff rule, TID251).
"""
