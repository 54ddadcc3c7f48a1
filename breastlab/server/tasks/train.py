"""A bundle's ``train.json`` as a MONAI Label train task that fine-tunes on the datastore's final labels."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from monailabel.interfaces.tasks.train import TrainTask

from breastlab.bundle import Bundle
from breastlab.data import case_dicts
from breastlab.formats.png import write_text_atomic
from breastlab.server.http import errors

logger = logging.getLogger(__name__)


class BundleTrainTask(TrainTask):
    """Fine-tune from the weights being served; the best checkpoint on a held-out part replaces them."""

    def __init__(self, bundle: Bundle, served_weights: Path):
        super().__init__(f"Fine-tune {bundle.name} on the datastore's final labels")
        self.bundle = bundle
        self.served_weights = Path(served_weights)
        self.stats_file = self.served_weights.with_suffix(".json")

    def config(self) -> dict:
        return {"max_epochs": 10, "learning_rate": 1e-4, "batch_size": 8, "val_fraction": 0.2}

    def _write_progress(self, trainer) -> None:
        """While training: the epochs done and planned, in the stats file (``/info/`` shows it)."""
        progress = {"bundle": self.bundle.name, "status": "RUNNING", "epoch": trainer.state.epoch,
                    "max_epochs": trainer.state.max_epochs, "updated": time.time()}
        write_text_atomic(self.stats_file, json.dumps(progress, indent=2))

    def stats(self) -> dict:
        """The running or last finished run (training runs in a MONAI Label subprocess, so read from disk)."""
        return json.loads(self.stats_file.read_text()) if self.stats_file.is_file() else {}

    def training_items(self, datastore) -> list[dict]:
        """Images with a final label; for a classifier, those whose image-level class it knows (``target``)."""
        classes = self.bundle.classes or None
        items = case_dicts(datastore.final_cases(), classes=classes, mask_fraction=1.0)
        if not items:
            needed = f" and a class among {', '.join(classes)}" if classes else ""
            raise errors.conflict(f"no image has a final label{needed} yet: save labels before training")
        return items

    def __call__(self, request: dict, datastore) -> dict:
        server = os.getppid()  # a training subprocess whose server died stops, and replaces nothing

        def on_epoch(trainer) -> None:
            check_server(server)
            self._write_progress(trainer)

        options = {**self.config(), **{k: v for k, v in request.items() if k in self.config()}}
        items = self.training_items(datastore)
        train, val = split_train_val(items, float(options["val_fraction"]))
        start_weights = next((p for p in (self.served_weights, self.bundle.model_path) if p.is_file()), None)
        cached = {"embedding_dir": str(self.served_weights.parent / "embeddings")} if self.bundle.prompts else {}
        self.served_weights.parent.mkdir(parents=True, exist_ok=True)
        start = time.time()
        with tempfile.TemporaryDirectory(dir=self.served_weights.parent, prefix=".train-") as run_dir:
            parser = self.bundle.train(
                train_datalist=train,
                val_datalist=val,
                epochs=int(options["max_epochs"]),
                learning_rate=float(options["learning_rate"]),
                batch_size=int(options["batch_size"]),
                initial_weights=start_weights and str(start_weights),
                ckpt_dir=run_dir,
                output_dir=run_dir,
                num_workers=0,
                on_epoch=on_epoch,
                **cached,
            )
            check_server(server)
            os.replace(Path(run_dir) / "model.pt", self.served_weights)
            best = parser.get_parsed_content("validate#evaluator").state
        stats = {
            "bundle": self.bundle.name,
            "status": "DONE",
            "train_images": len(train),
            "val_images": len(val),
            "epochs": int(options["max_epochs"]),
            "metric": next(iter(parser["validate"]["key_metric"])),
            "best_metric": float(best.best_metric),
            "best_epoch": int(best.best_metric_epoch),
            "seconds": round(time.time() - start, 1),
            "weights": self.served_weights.name,  # no server paths for user roles
        }
        write_text_atomic(self.stats_file, json.dumps(stats, indent=2))
        logger.info(f"Training finished: {stats}")
        return stats


def check_server(parent: int) -> None:
    """Raise when this process's parent is no longer ``parent`` (the server that started it was killed)."""
    if os.getppid() != parent:
        raise RuntimeError(f"the server (pid {parent}) that started this training is gone: stopping, weights kept")


def split_train_val(items: list[dict], val_fraction: float) -> tuple[list[dict], list[dict]]:
    """Every k-th item (sorted by image) goes to validation; with fewer than 2 items, validate on train."""
    items = sorted(items, key=lambda d: d["image"])
    if len(items) < 2 or val_fraction <= 0:
        return items, items
    step = max(2, round(1 / val_fraction))
    val = items[::step]
    train = [d for d in items if d not in val]
    return train, val
