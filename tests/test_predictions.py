"""PredictionStore on its own: one record per (image, model), replaced, filtered, durable across opens."""

from __future__ import annotations

import threading

from breastlab.server.datastore.predictions import PredictionStore


def test_latest_prediction_per_image_and_model_survives_reopening(tmp_path):
    store = PredictionStore.of(tmp_path)
    store.put("a", "seg", {"lesion_pixels": 1})
    store.put("a", "seg", {"lesion_pixels": 2})
    store.put("a", "cls", {"probabilities": {"benign": 0.3, "malignant": 0.7}})
    store.put("b", "seg", {"lesion_pixels": 0})
    reopened = PredictionStore.of(tmp_path)
    assert [(r["image"], r["model"]) for r in reopened.list()] == [("a", "cls"), ("a", "seg"), ("b", "seg")]
    assert [r["result"] for r in reopened.list(image="a", model="seg")] == [{"lesion_pixels": 2}]
    assert [r["image"] for r in reopened.list(model="seg")] == ["a", "b"]
    reopened.remove("a")
    assert [r["image"] for r in store.list()] == ["b"]


def test_concurrent_writers_lose_nothing(tmp_path):
    store = PredictionStore.of(tmp_path)

    def write(worker: int) -> None:
        for i in range(25):
            store.put(f"img{worker}_{i}", "seg", {"i": i})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.list()) == 200
