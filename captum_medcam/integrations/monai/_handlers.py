"""An Ignite handler that scores attribution maps in a MONAI ``SupervisedEvaluator``."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from captum_medcam.evaluation import (
    Metric,
    apply_metrics,
    attribute_batch,
    batch_target,
    check_attribute_kwargs,
    check_evaluation_target,
    check_metrics,
    gather_values,
    summarize,
)

__all__ = ["AttributionHandler"]


class AttributionHandler:
    """Compute maps and faithfulness metrics for every batch of an evaluator; report mean, std.

    Attach it to a MONAI ``SupervisedEvaluator`` (or any Ignite engine whose output holds
    the images and predictions). After each iteration it computes the maps of the batch's
    images with ``attribution`` and scores them with each metric; when the epoch completes
    it writes ``engine.state.metrics[name]`` (the data-set mean) and
    ``engine.state.metrics[name + "_std"]`` (population std), so ``StatsHandler`` and the
    other MONAI handlers report them, and keeps the per-sample values in :attr:`values`.

    It works in the evaluator's default eval mode: maps and metrics are computed inside the
    evaluator's own mode context (``engine.mode(engine.network)``, the ``eval_mode`` that
    the evaluator uses for its forward pass, which restores the mode afterwards), with
    gradients enabled locally for the methods that need them (``LayerGradCam``). The
    handler never changes the model's mode on its own.

    Under ``torch.distributed`` every rank's values are gathered at the end of the epoch,
    on every rank. Use a sampler that gives each sample to one rank only (e.g.
    ``monai.data.DistributedSampler(dataset, even_divisible=False, shuffle=False)``);
    PyTorch's default sampler pads with duplicates.

    Args:
        attribution: an attribution object over the evaluator's network, e.g.
            ``ScoreCAM3D(net, net.layer4)``.
        metrics: name -> metric function (signature of :mod:`captum_medcam.metrics`);
            None for :func:`captum_medcam.evaluation.default_metrics`.
        target: ``"pred"`` (argmax of the evaluator's prediction), ``"label"`` or a fixed
            class.
        image_key, pred_key, label_key: keys of ``engine.state.output`` (MONAI's ``Keys``).
        attribute_kwargs: options of ``attribution.attribute``.

    Example:
        >>> import torch
        >>> from monai.engines import SupervisedEvaluator
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import ScoreCAM3D
        >>> from captum_medcam.integrations.monai import AttributionHandler
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25)
        >>> data = torch.utils.data.DataLoader(
        ...     [{"image": torch.randn(1, 16, 16, 16), "label": torch.tensor(1)}] * 2, batch_size=2)
        >>> mean_map = lambda f, x, a, target=None, additional_forward_args=None: a.flatten(1).mean(1)
        >>> evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data,
        ...                                 network=net, decollate=False)
        >>> AttributionHandler(ScoreCAM3D(net, net.layer2), {"mean_map": mean_map}).attach(evaluator)
        >>> evaluator.run()
        >>> sorted(evaluator.state.metrics)
        ['mean_map', 'mean_map_std']
    """

    def __init__(
        self,
        attribution: Any,
        metrics: Mapping[str, Metric] | None = None,
        *,
        target: Any = "pred",
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str = "label",
        attribute_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(getattr(attribution, "attribute", None)):
            raise TypeError(
                "attribution must be an attribution object with an attribute() method, "
                f"got {type(attribution).__name__}"
            )
        check_evaluation_target(target)
        self.attribution = attribution
        self.metrics = check_metrics(metrics)
        self.target = target
        self.image_key = image_key
        self.pred_key = pred_key
        self.label_key = label_key
        self.attribute_kwargs = check_attribute_kwargs(attribute_kwargs)
        self.values: dict[str, Tensor] = {}
        self._parts: dict[str, list[Tensor]] = {}

    def attach(self, engine: Any) -> None:
        """Register the handler's callbacks on ``engine``."""
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._complete)

    def _reset(self, engine: Any) -> None:
        self._parts = {name: [] for name in self.metrics}

    def __call__(self, engine: Any) -> None:
        images, preds, labels = self._unpack(engine.state.output)
        network = getattr(engine, "network", None)
        mode = getattr(engine, "mode", None)
        context = mode(network) if network is not None and callable(mode) else nullcontext()
        with context:
            target = batch_target(self.target, labels, preds, images.shape[0])
            maps = attribute_batch(self.attribution, images, target, **self.attribute_kwargs)
            values = apply_metrics(
                self.metrics, self.attribution.forward_func, images, maps, target
            )
        for name, value in values.items():
            self._parts.setdefault(name, []).append(value)

    def _unpack(self, output: Any) -> tuple[Tensor, Tensor | None, Any]:
        """Images, predictions and labels of a batch, collated or decollated (a list of dicts)."""
        if isinstance(output, (list, tuple)) and output and isinstance(output[0], Mapping):
            rows = list(output)
            stack = {
                k: [r.get(k) for r in rows] for k in (self.image_key, self.pred_key, self.label_key)
            }
            if any(v is None for v in stack[self.image_key]):
                raise KeyError(
                    f"image_key {self.image_key!r} is missing from the engine's output items"
                )
            collated = {
                k: torch.stack([torch.as_tensor(v) for v in vals])
                if all(v is not None for v in vals)
                else None
                for k, vals in stack.items()
            }
            return collated[self.image_key], collated[self.pred_key], collated[self.label_key]  # type: ignore[return-value]
        if isinstance(output, Mapping):
            if self.image_key not in output:
                raise KeyError(
                    f"image_key {self.image_key!r} is not in the engine's output; its keys are "
                    f"{sorted(map(str, output))}"
                )
            return output[self.image_key], output.get(self.pred_key), output.get(self.label_key)
        raise TypeError(
            "AttributionHandler needs engine.state.output to be a dict (or a list of dicts) with "
            f"images and predictions, as MONAI evaluators produce, got {type(output).__name__}"
        )

    def _complete(self, engine: Any) -> None:
        import torch.distributed as dist

        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        local = {
            name: torch.cat(parts) if parts else torch.empty(0)
            for name, parts in self._parts.items()
        }
        self.values = gather_values(local, world)
        for name, value in self.values.items():
            mean, std = summarize(value)
            engine.state.metrics[name] = mean
            engine.state.metrics[f"{name}_std"] = std
