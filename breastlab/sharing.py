"""Bundle archives: a bundle folder as a MONAI bundle zip that runs on another machine with ``breastlab`` installed."""

from __future__ import annotations

import zipfile
from pathlib import Path

from breastlab.bundle import Bundle, BundleError

# what an archive holds, relative to the bundle folder: MONAI's layout plus the sample its inference reads
ARCHIVED = ("configs/*.json", "models/**/model.pt", "docs/*", "sample/**/*", "LICENSE")
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # fixed, so the same bundle always gives the same archive bytes


def archive_name(bundle: Bundle) -> str:
    return f"{bundle.name}_v{bundle.version}.zip"


def archived_files(bundle: Bundle) -> list[Path]:
    """The files of ``bundle`` that go into its archive, sorted."""
    files = {p for pattern in ARCHIVED for p in bundle.root.glob(pattern) if p.is_file()}
    return sorted(files)


def default_inputs(bundle: Bundle) -> list[Path]:
    """The images ``configs/inference.json`` reads when run as it is (its ``datalist``)."""
    return [Path(item["image"]) for item in bundle.parser("inference").get_parsed_content("datalist")]


def check_self_contained(bundle: Bundle) -> None:
    """Raise :class:`BundleError` unless the bundle's default inference inputs exist and lie inside it."""
    inputs = default_inputs(bundle)
    if not inputs:
        raise BundleError(f"{bundle.name}: configs/inference.json finds no input image (its sample/ is missing)")
    outside = [p for p in inputs if not p.resolve().is_relative_to(bundle.root)]
    if outside:
        raise BundleError(f"{bundle.name}: default inputs outside the bundle: {', '.join(map(str, outside))}")
    for part in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "LICENSE"):
        if not (bundle.root / part).is_file():
            raise BundleError(f"{bundle.name}: {part} is missing")


def export_bundle(bundle: Bundle, out_dir: str | Path) -> Path:
    """Write ``out_dir/NAME_vX.Y.Z.zip`` holding ``NAME/`` with :data:`ARCHIVED`; the same bundle gives the same
    bytes. The archive is written beside its final name and moved there complete."""
    check_self_contained(bundle)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"{out_dir} is a file: --out names the folder the archives go into")
    out = Path(out_dir) / archive_name(bundle)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in archived_files(bundle):
            entry = zipfile.ZipInfo(f"{bundle.name}/{path.relative_to(bundle.root).as_posix()}", _TIMESTAMP)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    partial.replace(out)
    return out
