"""The public surface and a light import."""

from __future__ import annotations

import subprocess
import sys

import captum_medcam
from tests.conftest import ATTRIBUTION_CLASSES


def test_public_names_are_exported():
    for name in captum_medcam.__all__:
        assert getattr(captum_medcam, name) is not None
    assert captum_medcam.__version__.count(".") >= 2


def test_import_does_not_load_optional_dependencies():
    code = (
        "import sys, captum_medcam; "
        "print(sorted(m for m in ('plotly', 'medmnist', 'ignite', 'nibabel') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_private_all_lists_name_only_what_the_package_exports():
    """A private module's ``__all__`` lists exactly the names a public module re-exports from it."""
    import importlib
    import pkgutil

    modules = {
        m.name: importlib.import_module(m.name)
        for m in pkgutil.walk_packages(captum_medcam.__path__, "captum_medcam.")
    }
    modules["captum_medcam"] = captum_medcam

    def private(name: str) -> bool:
        return any(part.startswith("_") for part in name.split(".")[1:])

    exported: dict[str, list[object]] = {}
    for name, module in modules.items():
        if not private(name):
            for n in getattr(module, "__all__", ()):
                exported.setdefault(n, []).append(getattr(module, n))
    for name, module in modules.items():
        if not private(name) or name.endswith("._core"):
            continue
        listed = set(getattr(module, "__all__", ()))
        reexported = {
            n
            for n, objects in exported.items()
            if n in vars(module)
            and any(o is vars(module)[n] for o in objects)
            and getattr(vars(module)[n], "__module__", name) == name
        }
        assert listed <= set(exported), (name, sorted(listed - set(exported)))
        assert reexported <= listed, (name, sorted(reexported - listed))


def test_the_client_tests_cover_every_attribution_class():
    """MONAI's DataLoader batches, NoiseTunnel and captum.metrics are tested over
    ``ATTRIBUTION_CLASSES``: a new exported class must join that list."""
    from captum.attr import Attribution

    exported = {
        name
        for name in captum_medcam.__all__
        if isinstance(getattr(captum_medcam, name), type)
        and issubclass(getattr(captum_medcam, name), Attribution)
    }
    assert exported == set(ATTRIBUTION_CLASSES)


def test_every_private_attr_module_is_banned_outside_attr():
    """ruff's TID251 keeps attr's private modules private; a new module must join the list."""
    import pkgutil
    import re
    from pathlib import Path

    import captum_medcam.attr

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    banned = set(re.findall(r'^"(captum_medcam\.attr\.\w+)"\.msg = ', text, flags=re.M))
    private = {
        f"captum_medcam.attr.{m.name}"
        for m in pkgutil.iter_modules(captum_medcam.attr.__path__)
        if m.name.startswith("_")
    }
    assert private <= banned, sorted(private - banned)


def test_docstrings_are_written_out_not_assembled():
    """IDE hovers and static doc tools read docstrings from the source: none is glued
    together at import time (``f.__doc__ = ... + ...``)."""
    import re
    from pathlib import Path

    package = Path(captum_medcam.__file__).parent
    assembled = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"__doc__\s*[+]?=", line)
    ]
    assert assembled == []
