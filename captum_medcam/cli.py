"""The ``captum-medcam`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from captum_medcam._demo import run_demo

    result = run_demo(args.output, size=args.size, seed=args.seed, steps=args.steps)
    print(f"captum_medcam demo finished in {result.seconds:.1f} s")
    print(f"  model: MONAI resnet10 (3D), test accuracy {result.accuracy:.0%} on synthetic lesions")
    print(
        f"  ScoreCAM3D: the map's maximum lies {'inside' if result.peak_in_lesion else 'OUTSIDE'} the lesion"
    )
    print(
        f"  {result.energy_in_lesion:.1%} of the map's positive energy lies in the lesion, which covers "
        f"{result.lesion_fraction:.1%} of the volume ({result.energy_in_lesion / result.lesion_fraction:.1f}x chance)"
    )
    print(f"  slices:    {result.figure.resolve()}")
    print(f"  NIfTI map: {result.nifti_map.resolve()}")
    print(f"  NIfTI image (same affine): {result.nifti_image.resolve()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``captum-medcam`` and ``python -m captum_medcam.cli``."""
    parser = argparse.ArgumentParser(prog="captum-medcam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="explain a synthetic volume with ScoreCAM3D (no download, CPU)"
    )
    demo.add_argument(
        "--output", default="demo_output", help="folder for the figures and NIfTI files"
    )
    demo.add_argument("--size", type=int, default=32, help="edge of the synthetic volume in voxels")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--steps", type=int, default=80, help="training steps of the demo model")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
