"""MONAI integration: dictionary transforms, an evaluator handler and layer helpers.

Importing this module imports MONAI's transforms (a few seconds); ``import captum_medcam``
does not.
"""

from captum_medcam.integrations.monai._handlers import AttributionHandler
from captum_medcam.integrations.monai._layers import LayerInfo, get_layer, list_layers
from captum_medcam.integrations.monai._transforms import (
    Attributiond,
    InvertAttributiond,
    check_invertible,
)

__all__ = [
    "AttributionHandler",
    "Attributiond",
    "InvertAttributiond",
    "LayerInfo",
    "check_invertible",
    "get_layer",
    "list_layers",
]
