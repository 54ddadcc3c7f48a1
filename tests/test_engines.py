"""TargetsBatch and KeywordLoss: multi-task networks in MONAI's SupervisedTrainer."""

from __future__ import annotations

import pytest
import torch

from breastlab.engines import KeywordLoss, TargetsBatch
from breastlab.losses import MultiTaskSegClsLoss


def test_targets_batch_gathers_named_entries_as_tensors():
    batch = {"image": torch.ones(2, 1, 4, 4), "label": torch.zeros(2, 1, 4, 4), "target": [0, 1],
             "has_mask": torch.tensor([True, False])}
    image, targets = TargetsBatch({"mask": "label", "target": "target", "has_mask": "has_mask"})(batch, "cpu")
    assert torch.equal(image, batch["image"])
    assert set(targets) == {"mask", "target", "has_mask"} and torch.equal(targets["target"], torch.tensor([0, 1]))


def test_keyword_loss_takes_inputs_from_outputs_and_targets_and_keeps_parameters():
    inner = MultiTaskSegClsLoss()
    loss = KeywordLoss(inner, {"output": "output", "mask": "mask", "label": "target"})
    output = {"seg": torch.zeros(2, 1, 4, 4, requires_grad=True), "cls": torch.zeros(2, 3, requires_grad=True)}
    targets = {"mask": torch.ones(2, 1, 4, 4), "target": torch.tensor([1, 2])}
    value = loss(output, targets)
    assert value == inner(output, targets["mask"], targets["target"])
    assert [p is q for p, q in zip(loss.parameters(), inner.parameters())] == [True]
    assert loss.terms is inner.terms and "cls" in loss.terms


def test_keyword_loss_without_terms_reports_its_value_and_names_missing_inputs():
    loss = KeywordLoss(torch.nn.CrossEntropyLoss(), {"input": "cls", "target": "target"})
    value = loss({"cls": torch.tensor([[2.0, 0.0]])}, {"target": torch.tensor([0])})
    assert loss.terms == {"loss": value.detach()}
    with pytest.raises(KeyError, match=r"no \['target'\]"):
        loss({"cls": torch.tensor([[2.0, 0.0]])}, {})


def test_parameter_groups_scale_or_freeze_by_name_prefix():
    from breastlab.engines import parameter_groups

    network = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    groups = parameter_groups(network, 0.01, {"0.": 0.1})
    assert [(len(g["params"]), g["lr"]) for g in groups] == [(2, pytest.approx(0.001)), (2, 0.01)]
    frozen = parameter_groups(network, 0.01, {"0.": 0.0})
    assert [(len(g["params"]), g["lr"]) for g in frozen] == [(2, 0.01)]
    assert frozen[0]["params"][0] is network[1].weight
