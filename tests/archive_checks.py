"""Run by tests/test_sharing.py with the python of a fresh virtual environment that holds the breastlab wheel:
MONAI's own checks on unpacked bundle archives, as a researcher would run them, and where ``breastlab`` came from.

    python archive_checks.py SCHEMA.json BUNDLE_FOLDER ...   # prints a JSON report
"""

import json
import os
import sys

from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

import breastlab

FILES = {"meta_file": "configs/metadata.json", "config_file": "configs/inference.json"}


def check(folder: str, schema: str) -> None:
    """``verify_metadata`` against ``schema``, ``verify_net_in_out``, and ``ckpt_export`` to models/model.ts."""
    os.chdir(folder)
    verify_metadata(meta_file=FILES["meta_file"], filepath=schema)
    verify_net_in_out(net_id="network_def", **FILES)
    ckpt_export(net_id="network_def", filepath="models/model.ts", ckpt_file="models/model.pt", **FILES)


def main(schema: str, folders: list[str]) -> None:
    for folder in folders:
        check(folder, schema)
    print(json.dumps({"breastlab_file": breastlab.__file__, "version": breastlab.__version__, "sys_path": sys.path}))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), [os.path.abspath(f) for f in sys.argv[2:]])
