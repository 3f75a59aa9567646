"""Integrations with other frameworks; see :mod:`captum_medcam.integrations.monai`."""
