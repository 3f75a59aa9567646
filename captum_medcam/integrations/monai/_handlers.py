"""An Ignite handler that scores attribution maps in a MONAI ``SupervisedEvaluator``."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam.evaluation import (
    Metric,
    apply_metrics,
    attribute_batch,
    batch_target,
    check_attribute_kwargs,
    check_evaluation_target,
    check_metrics,
    gather_values,
    mean_std,
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
        target: ``"pred"`` (the class the evaluator predicted), ``"label"`` or a fixed
            class. The prediction (and the label) may be in any form MONAI's postprocessing
            leaves: class scores ``(N, K)`` (logits, or after ``Activationsd``: argmax), a
            one-hot ``(N, K)`` (``AsDiscreted(to_onehot=K)``), class indices ``(N,)`` or
            ``(N, 1)`` (``AsDiscreted(argmax=True)``: used as they are), with the
            evaluator's ``decollate`` on or off; see
            :func:`captum_medcam._core.targets.class_indices`. What names no single class (a
            multi-label 0/1 prediction, one score per example) is a ``ValueError`` that
            says what to store instead.
        image_key, pred_key, label_key: keys of ``engine.state.output`` (MONAI's ``Keys``).
        attribute_kwargs: options of ``attribution.attribute``.
        map_key: if given, the maps are also put into ``engine.state.output[map_key]``
            (into every item when the evaluator decollates), as ``MetaTensor`` s
            ``(N, C', *S)`` (``(C', *S)`` per item) with the images' metadata, so that
            handlers attached after this one, such as ``PostProcessing(Compose([Invertd(
            map_key, pre, orig_keys=image_key), SaveImaged(map_key, ...)]),
            event="ITERATION_COMPLETED")``, can invert and save them (with
            ``decollate=False``, attach MONAI's ``DecollateBatch(event="ITERATION_COMPLETED")``
            in between, as MONAI's transforms work on single samples).

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
        map_key: str | None = None,
    ) -> None:
        if map_key is not None and not isinstance(map_key, str):
            raise TypeError(f"map_key must be a str or None, got {map_key!r}")
        if map_key is not None and map_key in (image_key, pred_key, label_key):
            raise ValueError(
                f"map_key {map_key!r} would overwrite the evaluator's {map_key!r}; choose "
                "another key, e.g. 'cam'"
            )
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
        self.map_key = map_key
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
        output = engine.state.output
        images, preds, labels = self._unpack(output)
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
        if self.map_key is not None:
            self._store_maps(output, maps)

    def _store_maps(self, output: Any, maps: Tensor) -> None:
        """Put the maps into the engine's output: per item, with each item's image metadata."""
        if isinstance(output, Mapping):
            output[self.map_key] = maps  # type: ignore[index]  # a MetaTensor for MetaTensor images
            return
        plain = unwrap_meta(maps)
        for i, item in enumerate(output):
            item[self.map_key] = wrap_meta(plain[i], item[self.image_key])

    def _unpack(self, output: Any) -> tuple[Tensor, Any, Any]:
        """Images, predictions and labels of a batch, collated or decollated (a list of dicts).

        Decollated predictions and labels stay lists of per-sample values, which
        :func:`~captum_medcam._core.targets.class_indices` reads.
        """
        if isinstance(output, (list, tuple)) and output and isinstance(output[0], Mapping):
            rows = list(output)
            stack = {
                k: [r.get(k) for r in rows] for k in (self.image_key, self.pred_key, self.label_key)
            }
            if any(v is None for v in stack[self.image_key]):
                raise KeyError(
                    f"image_key {self.image_key!r} is missing from the engine's output items"
                )
            images = torch.stack([unwrap_meta(torch.as_tensor(v)) for v in stack[self.image_key]])
            rest = [
                vals if all(v is not None for v in vals) else None
                for vals in (stack[self.pred_key], stack[self.label_key])
            ]
            return images, rest[0], rest[1]
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
            mean, std = mean_std(value)
            engine.state.metrics[name] = mean
            engine.state.metrics[f"{name}_std"] = std
