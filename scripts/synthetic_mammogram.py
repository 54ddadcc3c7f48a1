"""Write the synthetic mammogram that the mammography bundles carry as their sample input (``sample/images``).

No mammogram the project may redistribute exists here, so the bundles' sample is drawn: a breast against the left
edge with smoothed-noise tissue, fat towards the skin, a pectoral muscle (MLO view), a denser round mass and a
burned-in view label. It only shows that a bundle runs; its scores mean nothing.

    python scripts/synthetic_mammogram.py bundles/breast_mammo_glam/sample/images/synthetic_mlo.png
"""

import argparse

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def synthetic_mammogram(size: int = 640, seed: int = 0) -> np.ndarray:
    """A ``size`` x ``size`` uint8 left MLO mammogram (breast at the left edge)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size] / size
    depth = np.hypot((rows - 0.55) / 0.45, cols / 0.62)  # 0 at the chest wall's centre, 1 on the skin line
    breast = depth <= 1.0
    tissue = 22 * _smooth_noise(rng, size, 8) + 8 * _smooth_noise(rng, size, 2)
    image = np.where(breast, 95 + 70 * np.sqrt(np.clip(1 - depth, 0, 1)) + tissue, 4 + rng.normal(size=(size, size)))
    image[(cols < 0.22 - 0.3 * rows) & breast] = 190 + tissue[(cols < 0.22 - 0.3 * rows) & breast] / 4  # pectoral
    mass = np.hypot(rows - 0.52, cols - 0.3) < 0.035
    image[mass] += 55
    image[24:52, size - 120: size - 40] = 250  # burned-in view label
    return np.clip(image, 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    noise = gaussian_filter(rng.normal(size=(size, size)), sigma)
    return noise / noise.std()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG file to write")
    Image.fromarray(synthetic_mammogram()).save(parser.parse_args().out, optimize=True)


if __name__ == "__main__":
    main()
