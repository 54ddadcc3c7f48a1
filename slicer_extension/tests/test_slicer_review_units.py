"""BreastLabLib.review without a server: the readers' colours, the reviewer's labels and the agreement summary."""

from __future__ import annotations

from BreastLabLib.review import CONSENSUS_COLOR, READER_COLORS, given_labels, reader_colors, review_text

STATE = {
    "image": "case009", "status": "in_review", "comment": "ann: see the upper edge",
    "readers": {"bob": {"class": "benign", "birads": "3", "sensitivity": 0.8125, "specificity": 0.99},
                "ann": {"class": "malignant", "birads": "4a", "sensitivity": 1.0, "specificity": 0.974}},
    "consensus": {"class": "malignant", "birads": "4a"},
    "agreement": [{"readers": ["ann", "bob"], "dice": 0.71234, "hd95": 12.31}],
}


def test_each_reader_gets_a_distinct_colour_in_name_order_and_none_is_the_consensus_colour():
    colors = reader_colors(["zoe", "ann", "bob"])
    assert list(colors) == ["ann", "bob", "zoe"] and colors["ann"] == READER_COLORS[0]
    assert len(set(READER_COLORS) | {CONSENSUS_COLOR}) == len(READER_COLORS) + 1 >= 11
    many = reader_colors([f"r{i:02d}" for i in range(12)])
    assert many["r10"] == READER_COLORS[0]  # past the palette the colours repeat


def test_the_reviewers_labels_leave_blanks_out():
    assert given_labels("malignant", "") == {"class": "malignant"}
    assert given_labels("", "4c") == {"birads": "4c"} and given_labels() == {}


def test_the_summary_gives_agreement_each_readers_labels_and_scores_the_consensus_and_the_comment():
    assert review_text(STATE).splitlines() == [
        "case009: in review, readers ann, bob",
        "Dice ann / bob: 0.712 (HD95 12.3 px)",
        "ann: malignant, BI-RADS 4a; sensitivity 1.00, specificity 0.97",
        "bob: benign, BI-RADS 3; sensitivity 0.81, specificity 0.99",
        "consensus: malignant, BI-RADS 4a",
        "Comment: ann: see the upper edge",
    ]


def test_the_summary_says_what_is_unknown():
    one_empty = {**STATE, "comment": None, "agreement": [{"readers": ["ann", "bob"], "dice": 0.0, "hd95": None}],
                 "readers": {"ann": {"class": None, "birads": None}, "bob": {"class": "benign", "birads": "2"}},
                 "consensus": {"class": "benign", "birads": None}}
    assert review_text(one_empty).splitlines()[1:] == [
        "Dice ann / bob: 0.000 (HD95 n/a)", "ann: no class, BI-RADS -", "bob: benign, BI-RADS 2",
        "consensus: benign, BI-RADS -"]
    assert review_text({"image": "x", "status": "unlabelled", "readers": {}}) == "x: unlabelled, readers none"
