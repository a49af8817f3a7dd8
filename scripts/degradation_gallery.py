# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Write a gallery of the fundus quality degradations (Shen et al., TMI 2021) at three severities.

Rows: illumination-colour, halo, hole, spot, blur, combined (``"111"``); columns: the original and the severities
mild / moderate / severe. Each row uses one seed, so the three severities share the same random geometry and only
the strength grows. The image is the CC0 fundus photograph that ships with scikit-image (``skimage.data.retina``).

Usage::

    python scripts/degradation_gallery.py --out docs/images/degradations.png --size 512 --seed 0
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

#: (row label, transform class name, options); blur rows use a full Gaussian so the blur is visible at 512 px
ROWS = (
    ("illumination: colour", "RandFundusIllumination", {"color": True, "halo": False, "hole": False}),
    ("illumination: halo", "RandFundusIllumination", {"color": False, "halo": True, "hole": False}),
    ("illumination: hole", "RandFundusIllumination", {"color": False, "halo": False, "hole": True}),
    ("spot", "RandFundusSpot", {}),
    ("blur (full Gaussian)", "RandFundusBlur", {"blur_kernel_rule": "full_gaussian"}),
    ("combined '111'", "RandFundusDegradation", {"de_type": "111", "blur_kernel_rule": "full_gaussian"}),
)
SEVERITIES = ("mild", "moderate", "severe")


def retina_rgb(size: int) -> np.ndarray:
    """The scikit-image retina photograph as float32 ``(3, size, size)`` in [0, 1]."""
    from skimage.data import retina
    from skimage.transform import resize

    img = retina().astype(np.float32) / 255.0
    img = resize(img, (size, size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def make_gallery(out: str, size: int = 512, seed: int = 0) -> str:
    """Render the gallery PNG to ``out`` and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_qmix.transforms import degradation as deg
    from monai_qmix.transforms.fundus import fov_mask

    img = torch.as_tensor(retina_rgb(size))
    fov = fov_mask(img)
    cols = ("original", *SEVERITIES)
    fig, axes = plt.subplots(len(ROWS), len(cols), figsize=(2.4 * len(cols), 2.4 * len(ROWS)), dpi=90)
    for r, (label, cls_name, options) in enumerate(ROWS):
        images = [img]
        for severity in SEVERITIES:
            t = getattr(deg, cls_name)(severity=severity, **options).set_random_state(seed + r)
            images.append(torch.as_tensor(t(img, fov=fov)))
        for c, im in enumerate(images):
            ax = axes[r, c]
            ax.imshow(im.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
    fig.suptitle("monai_qmix fundus degradations (after Shen et al., TMI 2021)", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/degradations.png", help="output PNG path")
    parser.add_argument("--size", type=int, default=512, help="image size in pixels (square)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (row r uses seed + r)")
    args = parser.parse_args()
    start = time.perf_counter()
    path = make_gallery(args.out, size=args.size, seed=args.seed)
    print(f"wrote {path} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
