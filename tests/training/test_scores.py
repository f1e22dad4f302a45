import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.training.scores import (
    Scores,
    accuracy_metrics,
    confusion_matrix,
    fuse,
    fuse_files,
    fuse_learned,
)


def _scores(matrix, labels, ids=None):
    labels = np.array(labels)
    return Scores(ids or [f"v{i}" for i in range(len(labels))], labels, np.array(matrix, np.float32),
                  ["a", "b", "c", "d", "e", "f"][: np.array(matrix).shape[1]])


def test_metrics_top1_top5_mean_class_and_confusion():
    scores = np.array([[3, 1, 0], [0, 2, 1], [0, 2, 1], [1, 0, 0]], np.float32)
    labels = np.array([0, 1, 2, 2])
    m = accuracy_metrics(scores, labels, 3)
    assert m["top1"] == 0.5 and m["top5"] == 1.0
    assert m["mean_class_accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    assert confusion_matrix(scores, labels, 3).tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 0]]


def test_scores_round_trip(tmp_path):
    scores = _scores([[1, 2], [3, 0]], [1, 0])
    scores.save(tmp_path / "s.npz")
    back = Scores.load(tmp_path / "s.npz")
    assert back.ids == scores.ids and back.classes == ["a", "b"] and np.array_equal(back.scores, scores.scores)
    (tmp_path / "bad.npz").write_text("nope")
    with pytest.raises(FlowkitError, match="not a flowkit scores file"):
        Scores.load(tmp_path / "bad.npz")


def test_logit_fusion_lets_the_stream_that_knows_decide():
    # Classes (colour x direction): a=red-left, b=red-right, c=blue-left, d=blue-right.
    # RGB knows the colour only; flow knows the direction, and leans on one colour at random.
    rgb = _scores([[2, 2, -3, -3], [-3, -3, 2, 2]], [0, 3])
    flow = _scores([[3, -5, 4, -5], [-5, 3, -5, 4.5]], [0, 3])
    assert fuse([rgb, flow], [1, 1]).metrics()["top1"] == 1.0
    softmax = fuse([rgb, flow], [1, 1.5], average="softmax")
    assert softmax.metrics()["top1"] < 1.0  # probabilities let flow's coin flip outvote RGB
    weighted = fuse([rgb, flow], [1, 0])
    assert np.allclose(weighted.scores, rgb.scores)


def test_fusion_checks_its_inputs():
    a = _scores([[1, 0]], [0])
    with pytest.raises(FlowkitError, match="at least two"):
        fuse([a])
    with pytest.raises(FlowkitError, match="different videos"):
        fuse([a, _scores([[1, 0]], [1])])
    with pytest.raises(FlowkitError, match="one non-negative weight"):
        fuse([a, a], [1])


def test_learned_fusion_scores_each_video_with_a_model_fitted_on_the_others():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 4
    # Stream one separates {0,1} from {2,3}; stream two separates {0,2} from {1,3}.
    one = np.where((labels[:, None] // 2) == (np.arange(4)[None] // 2), 2.0, -2.0) + rng.normal(0, 0.3, (40, 4))
    two = np.where((labels[:, None] % 2) == (np.arange(4)[None] % 2), 2.0, -2.0) + rng.normal(0, 0.3, (40, 4))
    a, b = _scores(one, labels), _scores(two, labels)
    assert a.metrics()["top1"] <= 0.75 and b.metrics()["top1"] <= 0.75  # each knows half the label
    assert fuse_learned([a, b]).metrics()["top1"] > 0.95


def test_fusing_files_names_each_by_its_file_or_its_runs_stream_folder(tmp_path):
    rgb = _scores([[2, 0], [0, 1], [1, 0]], [0, 1, 1])
    flow = _scores([[0, 1], [0, 3], [3, 0]], [0, 1, 1])
    (tmp_path / "flow").mkdir()
    rgb.save(tmp_path / "rgb_scores.npz")
    flow.save(tmp_path / "flow/scores.npz")
    paths = [tmp_path / "rgb_scores.npz", tmp_path / "flow/scores.npz"]
    rows, fused = fuse_files(paths, [1, 1])
    assert list(rows) == ["rgb_scores", "flow", "fused"]
    assert rows["fused"] == fuse([rgb, flow], [1, 1]).metrics() == fused.metrics()
    assert rows["rgb_scores"] == rgb.metrics() and rows["flow"] == flow.metrics()
    with pytest.raises(FlowkitError, match="use --weights or --learn, not both"):
        fuse_files(paths, [1, 1], learn=True)


def test_fusing_three_files_tsn_rgb_flow_and_warped_flow(tmp_path):
    labels = [0, 1, 1, 0]
    streams = {"rgb": _scores([[1, 0], [0, 1], [1, 0], [1, 0]], labels),  # each wrong once, elsewhere
               "flow": _scores([[0, 1], [0, 1], [0, 1], [1, 0]], labels),
               "warped_flow": _scores([[1, 0], [1, 0], [0, 1], [1, 0]], labels)}
    for name, scores in streams.items():
        (tmp_path / name).mkdir()
        scores.save(tmp_path / name / "scores.npz")
    rows, fused = fuse_files([tmp_path / n / "scores.npz" for n in streams], [1, 1, 1])
    assert list(rows) == ["rgb", "flow", "warped_flow", "fused"]
    assert all(rows[n]["top1"] == 0.75 for n in streams) and rows["fused"]["top1"] == 1.0
    assert np.allclose(fused.scores, sum(s.scores for s in streams.values()) / 3)
