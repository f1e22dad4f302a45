"""`flowkit features`: clip features equal to the network's own forward pass, checkpoint layouts,
resuming, SIGKILL mid-run, outputs that are refused, the npy format."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from flowkit.cli import cli
from flowkit.data.sampling import feature_clips
from flowkit.errors import FlowkitError
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.flow.quantize import dequantize_flow
from flowkit.models import create_model
from flowkit.models.layouts import LAYOUTS
from flowkit.models.registry import info_of
from flowkit.store.reader import FlowStore
from flowkit.synth import make_action_dataset
from flowkit.training.features import FeatureSettings, extract_features
from flowkit.video import FrameSize

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from test_i3d import pytorch_i3d_shapes  # tests/models' pytorch-i3d layout writer

CLIP, STEP, SIZE = 8, 4, 32
OPTIONS = ["--clip", str(CLIP), "--step", str(STEP), "--size", str(SIZE), "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 videos of 20 frames at 32x32 (3 clips of 8 at step 4 each), and one of 6 frames (none)."""
    root = tmp_path_factory.mktemp("features")
    make_action_dataset(root / "videos", videos_per_class=2, test_per_class=1, frames=20, size=SIZE)
    for extra in (root / "videos").glob("*/*_01.avi"):
        extra.unlink()
    make_action_dataset(root / "short", videos_per_class=2, test_per_class=1, frames=6, size=SIZE)
    (root / "videos/short").mkdir()
    shutil.copy(root / "short/warm_up/warm_up_00.avi", root / "videos/short/tiny.avi")
    report = extract(root / "videos", root / "data.h5", ExtractSettings(algorithm="dis", size=FrameSize.keep()),
                     jobs=1, progress=False)
    assert report.extracted == 9
    return root / "data.h5"


def _randomized(in_chans: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = create_model("i3d", num_classes=5, in_chans=in_chans)
    for module in net.modules():  # BN statistics other than 0 and 1, so that loading them shows
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """An RGB and a flow I3D of 5 classes, in flowkit's layout (rgb.pt, flow.pt), as one
    i3d_two_stream state dict (both.pt) and in pytorch-i3d's layout (rgb_i3d.pt, flow_i3d.pt)."""
    root = tmp_path_factory.mktemp("weights")
    files = {}
    both = {}
    for modality, chans, seed in (("rgb", 3, 1), ("flow", 2, 2)):
        state = _randomized(chans, seed).state_dict()
        torch.save(state, root / f"{modality}.pt")
        both.update({f"{modality}.{k}": v for k, v in state.items()})
        info = info_of(create_model("i3d", in_chans=chans))
        theirs = {LAYOUTS["pytorch-i3d"].rename(k, info): v for k, v in state.items()}
        assert set(theirs) == set(pytorch_i3d_shapes(chans, num_classes=5))  # their names exactly
        torch.save(theirs, root / f"{modality}_i3d.pt")
        files[modality], files[f"{modality}_i3d"] = root / f"{modality}.pt", root / f"{modality}_i3d.pt"
    torch.save(both, root / "both.pt")
    files["both"] = root / "both.pt"
    return files


def _settings(weights: dict[str, Path], **kwargs) -> FeatureSettings:
    names = kwargs.pop("names", ("rgb", "flow"))
    files = kwargs.pop("files", None) or tuple(f"{m}={weights[n]}" for m, n in zip(("rgb", "flow"), names, strict=True))
    kwargs = {"clip": CLIP, "step": STEP, "size": SIZE, "device": "cpu", "batch_size": 2, **kwargs}
    return FeatureSettings(weights=files, **kwargs)


def _read(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f["features"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _expected(data: Path, video_id: str, modality: str, layer: str, path: Path) -> np.ndarray:
    """The features computed here from the stored frames and the network's own layers."""
    net = create_model("i3d", num_classes=5, in_chans=3 if modality == "rgb" else 2)
    net.load_state_dict(torch.load(path))
    net.eval()
    with FlowStore(data) as store:
        video = store.video(video_id)
        clips = []
        for start in feature_clips(video.entry.pairs, CLIP, STEP):
            idx = range(start, start + CLIP)
            if modality == "rgb":  # BGR JPEG to RGB in [-1, 1]
                x = np.stack([video.rgb_frame(i)[..., ::-1] for i in idx]).astype(np.float32) / 127.5 - 1
            else:  # pixels over the bound: [-1, 1]
                x = np.stack([dequantize_flow(np.moveaxis(video.flow_codes(i), 0, -1), video.bound)
                              for i in idx]) / video.bound
            clips.append(torch.from_numpy(np.ascontiguousarray(x.transpose(3, 0, 1, 2))).float())
    x = torch.stack(clips)
    with torch.no_grad():
        if layer == "logits":
            return net(x).numpy()
        maps = net.forward_features(x)
        t, h, w = maps.shape[2:]
        return F.avg_pool3d(maps, (min(2, t), min(7, h), min(7, w)), stride=1).mean((2, 3, 4)).numpy()


@pytest.mark.parametrize("layer", ["pool", "logits"])
def test_features_equal_the_networks_own_forward_pass(tmp_path, data, weights, layer) -> None:
    report = extract_features(data, tmp_path / "f.h5", _settings(weights, layer=layer))
    assert (report.computed, report.skipped, report.clips) == (8, 0, 24)
    assert list(report.failed) == ["short/tiny"] and "needs 9" in report.failed["short/tiny"]
    got = _read(tmp_path / "f.h5")
    assert len(got) == 16
    dim = 1024 if layer == "pool" else 5
    for video_id in ("warm_up/warm_up_00", "cool_left/cool_left_00"):
        for modality in ("rgb", "flow"):
            features = got[f"{video_id}/{modality}"]
            assert features.shape == (3, dim) and features.dtype == np.float32
            expected = _expected(data, video_id, modality, layer, weights[modality])
            np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    with h5py.File(tmp_path / "f.h5", "r") as f:
        attrs = dict(f["features/warm_up/warm_up_00/flow"].attrs)
        assert json.loads(f.attrs["settings"])["clip"] == CLIP
    assert attrs["model"] == "i3d_two_stream" and attrs["weights"] == "flow.pt"
    assert len(attrs["weights_sha256"]) == 64 and attrs["fps"] == 25.0
    np.testing.assert_array_equal(attrs["frames"], [[0, 1, 2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8, 9, 10, 11],
                                                    [8, 9, 10, 11, 12, 13, 14, 15]])


def test_pytorch_i3d_layout_and_a_two_stream_file_give_the_same_features(tmp_path, data, weights) -> None:
    ours = extract_features(data, tmp_path / "ours.h5", _settings(weights))
    theirs = extract_features(data, tmp_path / "theirs.h5", _settings(weights, names=("rgb_i3d", "flow_i3d")))
    both = extract_features(data, tmp_path / "both.h5", _settings(weights, files=(str(weights["both"]),)))
    assert ours.computed == theirs.computed == both.computed == 8
    a, b, c = _read(tmp_path / "ours.h5"), _read(tmp_path / "theirs.h5"), _read(tmp_path / "both.h5")
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key], c[key])


def test_one_modality_and_logits_of_the_checkpoints_classes(tmp_path, data, weights) -> None:
    settings = FeatureSettings(weights=(str(weights["flow_i3d"]),), modality="flow", layer="logits", clip=CLIP,
                               step=STEP, size=SIZE, device="cpu")
    extract_features(data, tmp_path / "f.h5", settings)
    got = _read(tmp_path / "f.h5")
    assert {k.rsplit("/", 1)[1] for k in got} == {"flow"}
    assert got["warm_up/warm_up_00/flow"].shape == (3, 5)


def test_rerun_skips_done_videos_and_refuses_other_settings(tmp_path, data, weights) -> None:
    out = tmp_path / "f.h5"
    first = extract_features(data, out, _settings(weights))
    before = out.read_bytes()
    again = extract_features(data, out, _settings(weights))
    assert (again.computed, again.skipped, list(again.failed)) == (0, 8, ["short/tiny"])
    assert out.read_bytes() == before and first.computed == 8
    with pytest.raises(FlowkitError, match=r"other settings \(step differ\)"):
        extract_features(data, out, _settings(weights, step=2))
    with pytest.raises(FlowkitError, match=r"other settings \(weights_sha256 differ\)"):
        extract_features(data, out, _settings(weights, files=(f"rgb={weights['both']}", f"flow={weights['flow']}")))


def test_an_output_that_is_not_a_features_file_is_never_overwritten(tmp_path, data, weights) -> None:
    for name, fmt in (("notes.txt", "h5"), ("data.h5", "h5"), ("folder", "npy")):
        path = tmp_path / name
        if name == "folder":
            path.mkdir()
            (path / "mine.txt").write_text("keep")
        elif name == "data.h5":
            shutil.copy(data, path)
        else:
            path.write_text("keep")
        snapshot = sorted((p.name, p.read_bytes()) for p in [path, *path.glob("*")] if p.is_file())
        result = CliRunner().invoke(cli, ["features", str(data), str(path), "--format", fmt, *OPTIONS])
        assert result.exit_code == 2
        assert "is not a flowkit features" in result.output and result.output.count("\n") == 1
        assert sorted((p.name, p.read_bytes()) for p in [path, *path.glob("*")] if p.is_file()) == snapshot


def test_weights_that_do_not_fit_say_which_tensors_differ(tmp_path, data, weights) -> None:
    state = torch.load(weights["rgb"])
    state["features.mixed3b.b0.conv.weight"] = torch.zeros(64, 100, 1, 1, 1)
    torch.save(state, tmp_path / "bad.pt")
    result = CliRunner().invoke(cli, ["features", str(data), str(tmp_path / "f.h5"), "--modality", "rgb",
                                      "--weights", str(tmp_path / "bad.pt"), *OPTIONS])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "features.mixed3b.b0.conv.weight: checkpoint (64, 100, 1, 1, 1), model (64, 192, 1, 1, 1)" in result.output
    assert not (tmp_path / "f.h5").exists()
    one = CliRunner().invoke(cli, ["features", str(data), str(tmp_path / "f.h5"), "--weights", str(weights["rgb"]),
                                   *OPTIONS])  # one network for two streams
    assert one.exit_code == 2 and "holds one network, not an rgb and a flow tower" in one.output
    assert not (tmp_path / "f.h5").exists()


def test_npy_format_names_and_shapes_and_json_summary(tmp_path, data, weights) -> None:
    out = tmp_path / "npy"
    args = ["features", str(data), str(out), "--format", "npy", "--json", "--weights", f"rgb={weights['rgb']}",
            "--weights", f"flow={weights['flow']}", *OPTIONS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1  # the short video failed
    summary = json.loads(result.stdout)
    assert summary["computed"] == 8 and summary["failed"][0]["id"] == "short/tiny"
    rgb = np.load(out / "warm_up/warm_up_00_rgb.npy")
    flow = np.load(out / "warm_up/warm_up_00_flow.npy")
    assert rgb.shape == flow.shape == (3, 1024) and rgb.dtype == np.float32
    assert np.load(out / "warm_up/warm_up_00_frames.npy").shape == (3, CLIP)
    assert len(list(out.rglob("*_rgb.npy"))) == len(list(out.rglob("*_flow.npy"))) == 8
    h5 = tmp_path / "f.h5"
    extract_features(data, h5, _settings(weights, batch_size=8))
    np.testing.assert_allclose(rgb, _read(h5)["warm_up/warm_up_00/rgb"], rtol=1e-4, atol=1e-5 * np.abs(rgb).max())
    again = CliRunner().invoke(cli, args)
    assert json.loads(again.stdout)["skipped"] == 8


# ---- a real SIGKILL --------------------------------------------------------------------------------


def _start(data: Path, out: Path, weights: dict[str, Path]) -> subprocess.Popen:
    command = [sys.executable, "-m", "flowkit", "features", str(data), str(out), "-q", "--batch-size", "1",
               "--weights", f"rgb={weights['rgb']}", "--weights", f"flow={weights['flow']}", *OPTIONS]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _snapshot(out: Path) -> tuple:
    parts = out.with_name(out.name + ".parts")
    return (sorted(p.name for p in parts.glob("video-*")), sorted(p.name for p in out.parent.glob(out.name + ".*.tmp")))


TRIGGERS = [
    ("after a video", lambda old, new: any(n.endswith(".h5") and n not in old[0] for n in new[0])),
    ("merging staged videos", lambda old, new: any(n not in new[0] for n in old[0] if n.endswith(".h5"))),
    ("staging a video", lambda old, new: any(n.endswith(".tmp") for n in new[0])),
    ("writing the output", lambda old, new: bool(new[1])),
]


def _done_now(out: Path) -> set[str]:
    """Every complete video a killed run left: those in OUT and those staged. Each must open."""
    done = set()
    if out.exists():
        with h5py.File(out, "r") as f:
            done.update(f["videos"].asstr()[()])
    for staged in out.with_name(out.name + ".parts").glob("video-*.h5"):
        with h5py.File(staged, "r") as f:
            done.add(str(f.attrs["id"]))
    return done


def test_sigkill_at_any_moment_loses_only_unfinished_videos(tmp_path, data, weights) -> None:
    reference = tmp_path / "reference.h5"
    extract_features(data, reference, _settings(weights))
    out = tmp_path / "out.h5"
    killed_while, done = [], set()
    for attempt in range(12):
        name, fired = TRIGGERS[attempt % len(TRIGGERS)]
        old = _snapshot(out)
        process = _start(data, out, weights)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline and not fired(old, _snapshot(out)):
            pass
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_while.append(name)
        now = _done_now(out)  # every published file opens
        assert done <= now, f"killed {name}, finished videos were lost: {sorted(done - now)}"
        done = now
    assert set(killed_while) == {name for name, _ in TRIGGERS}, killed_while
    final = extract_features(data, out, _settings(weights))
    assert final.computed == 8 - len(done) and final.skipped == len(done)  # nothing finished was redone
    got, expected = _read(out), _read(reference)
    assert got.keys() == expected.keys()
    for key in got:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5 * np.abs(expected[key]).max())
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.glob("out.h5.parts/video-*"))


def test_feature_clips_are_video_features_stack_and_step() -> None:
    np.testing.assert_array_equal(feature_clips(64, 16, 16), [0, 16, 32, 48])
    np.testing.assert_array_equal(feature_clips(63, 16, 16), [0, 16, 32])  # the last one incomplete
    np.testing.assert_array_equal(feature_clips(20, 8, 5), [0, 5, 10])
    assert feature_clips(7, 8, 4).size == 0
    with pytest.raises(FlowkitError, match="step >= 1"):
        feature_clips(10, 8, 0)


def test_a_runs_final_checkpoint_and_its_rgb_values(tmp_path, data, weights) -> None:
    """A run's final.pt (the trainer's payload) loads, and its RGB values are the ones read."""
    state = torch.load(weights["rgb"])
    for values in ("unit", "imagenet"):
        torch.save({"model": state, "epoch": 1, "stream": "rgb", "rgb_values": values}, tmp_path / f"{values}.pt")
    runs = {}
    for values in ("unit", "imagenet"):
        settings = _settings(weights, modality="rgb", files=(str(tmp_path / f"{values}.pt"),))
        extract_features(data, tmp_path / f"{values}.h5", settings)
        runs[values] = _read(tmp_path / f"{values}.h5")["warm_up/warm_up_00/rgb"]
    extract_features(data, tmp_path / "plain.h5", _settings(weights, modality="rgb", files=(str(weights["rgb"]),)))
    np.testing.assert_array_equal(runs["unit"], _read(tmp_path / "plain.h5")["warm_up/warm_up_00/rgb"])
    assert not np.allclose(runs["imagenet"], runs["unit"])


def test_failures_are_shown_one_line_each(tmp_path, data, weights) -> None:
    args = ["features", str(data), str(tmp_path / "f.h5"), "--modality", "rgb", "-q",
            "--weights", str(weights["rgb"]), *OPTIONS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "features of 8 videos (24 clips)" in result.stdout and "0 already done; 1 failed" in result.stdout
    assert "failed: short/tiny: 6 frames: a clip of 8 needs 9" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "resnet18"], "resnet18 is not a clip network"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--clip", "0"], "--clip must be at least 1"),
    (["--weights", "missing.pt"], "--weights missing.pt: no such file"),
    (["--modality", "rgb", "--weights", "flow=x.pt"], "no flow stream with --modality rgb"),
])
def test_bad_options_fail_in_one_line_before_any_work(tmp_path, data, args, message) -> None:
    result = CliRunner().invoke(cli, ["features", str(data), str(tmp_path / "f.h5"), *args])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arch", ["x3d_xs", "r3d_18", "i3d"])
def test_pool_features_are_what_the_classifier_reads(tmp_path, data, arch) -> None:
    """The classifier applied to the `pool` features gives the `logits` features: X3D's head applies
    its Linear channels-last at every position and averages after (pytorchvideo's
    `create_x3d_head`), I3D's 1x1x1 convolution averages after too, R3D's fc reads a pooled vector;
    each is linear, so the average of the positions' logits is the logits of the average."""
    torch.manual_seed(3)
    net = create_model(arch, num_classes=5, in_chans=3).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    common = {"files": (f"rgb={tmp_path / 'w.pt'}",), "model": arch, "modality": "rgb"}
    extract_features(data, tmp_path / "pool.h5", _settings({}, layer="pool", **common))
    extract_features(data, tmp_path / "logits.h5", _settings({}, layer="logits", **common))
    pool, logits = _read(tmp_path / "pool.h5"), _read(tmp_path / "logits.h5")
    classifier = net.get_submodule(info_of(net).classifier)
    weight = classifier.weight.detach().reshape(5, -1)
    bias = classifier.bias.detach()
    assert pool.keys() == logits.keys() and len(pool) == 8
    for key, features in pool.items():
        assert features.shape == (3, weight.shape[1])
        np.testing.assert_allclose(features @ weight.numpy().T + bias.numpy(), logits[key], rtol=1e-4, atol=1e-4)


def test_a_2d_checkpoint_gives_the_features_of_the_network_it_inflates_to(tmp_path, data) -> None:
    """2D Inception-v1 weights start I3D by inflation (`init_from_state`): the features equal those
    of the I3D inflated here by `inflate_state_dict` and saved as a 3D checkpoint."""
    from flowkit.models import inception_v1
    from flowkit.models.weights import inflate_state_dict

    torch.manual_seed(4)
    net2d = inception_v1(num_classes=5)
    torch.save(net2d.state_dict(), tmp_path / "2d.pt")
    net3d = create_model("i3d", num_classes=5)
    net3d.load_state_dict(inflate_state_dict(net2d.state_dict(), net3d))
    torch.save(net3d.state_dict(), tmp_path / "3d.pt")
    for name in ("2d", "3d"):
        extract_features(data, tmp_path / f"{name}.h5", _settings(
            {}, files=(f"rgb={tmp_path / f'{name}.pt'}",), model="i3d", modality="rgb"))
    inflated, direct = _read(tmp_path / "2d.h5"), _read(tmp_path / "3d.h5")
    assert inflated.keys() == direct.keys() and len(inflated) == 8
    for key in inflated:
        np.testing.assert_allclose(inflated[key], direct[key], rtol=1e-5, atol=1e-6)


def test_amp_bf16_features_are_float32_and_close(tmp_path, data, weights) -> None:
    extract_features(data, tmp_path / "exact.h5", _settings(weights, modality="flow", files=(f"flow={weights['flow']}",)))
    extract_features(data, tmp_path / "half.h5", _settings(weights, modality="flow", amp="bf16",
                                                           files=(f"flow={weights['flow']}",)))
    exact, half = _read(tmp_path / "exact.h5"), _read(tmp_path / "half.h5")
    for key in exact:
        assert half[key].dtype == np.float32 and not np.array_equal(half[key], exact[key])
        np.testing.assert_allclose(half[key], exact[key], atol=0.05 * np.abs(exact[key]).max())
    with pytest.raises(FlowkitError, match="amp must be one of"):
        extract_features(data, tmp_path / "x.h5", _settings(weights, amp="fp8"))
