import os
import pickle

import pytest
import torch

from siso_lib.errors import SISOInputError
from siso_lib.features.ir import IRFeatures, load_ir_network
from siso_lib.offline.tiny_models import build_ir_state_dict


def test_loads_the_real_key_format_with_prefix_and_fc2(tiny_assets):
    raw = torch.load(tiny_assets["ir"], weights_only=True)
    assert all(key.startswith("module.") for key in raw) and "module.fc2.weight" in raw
    network = load_ir_network(tiny_assets["ir"])
    loaded = network.state_dict()
    for key, value in raw.items():
        name = key[len("module."):]
        if not name.startswith("fc2."):
            assert torch.equal(loaded[name], value), name
    assert network.backbone.conv1.stride == (12, 12)
    assert network.image_size == 50  # grid 4: (4 - 1) * 12 + 14


def test_shapes_are_read_from_the_checkpoint(tmp_path):
    state = build_ir_state_dict("tiny")
    network = load_ir_network(_save(tmp_path / "ir.pth", state))
    assert network.backbone.transformer.resblocks.__len__() == 2
    assert network.fc1.out_features == 64
    features = IRFeatures(network)(torch.rand(1, 3, 80, 120))
    assert features.shape == (1, 64)


def test_unprefixed_keys_load_too(tmp_path):
    state = {k[len("module."):]: v for k, v in build_ir_state_dict("tiny").items()}
    loaded = load_ir_network(_save(tmp_path / "plain.pth", state)).state_dict()
    for name, value in state.items():
        if not name.startswith("fc2."):  # the unused ArcFace head is dropped
            assert torch.equal(loaded[name], value), name


def test_extra_or_missing_keys_are_rejected_strictly(tmp_path):
    state = build_ir_state_dict("tiny")
    state["module.backbone.surprise"] = torch.zeros(1)
    with pytest.raises(SISOInputError, match="does not match the IR network"):
        load_ir_network(_save(tmp_path / "extra.pth", state))
    state = build_ir_state_dict("tiny")
    del state["module.backbone.ln_post.weight"]
    with pytest.raises(SISOInputError, match="does not match the IR network"):
        load_ir_network(_save(tmp_path / "missing.pth", state))


def test_a_different_network_is_named_as_such(tmp_path):
    other = {"conv.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}
    with pytest.raises(SISOInputError, match="different network.*expected an ir_features.pth state dict"):
        load_ir_network(_save(tmp_path / "resnet.pth", other))


def test_missing_empty_and_truncated_files(tmp_path, tiny_assets):
    with pytest.raises(SISOInputError, match="does not exist.*louieshao/guieweights0732"):
        load_ir_network(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(SISOInputError, match="empty"):
        load_ir_network(tmp_path / "empty.pth")
    data = open(tiny_assets["ir"], "rb").read()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(SISOInputError, match="truncated or not a PyTorch checkpoint"):
        load_ir_network(tmp_path / "cut.pth")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/siso-ir-pwned",))


def test_a_code_running_pickle_is_refused_not_executed(tmp_path):
    marker = "/tmp/siso-ir-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    torch.save({"backbone.conv1.weight": _Evil()}, path)
    with pytest.raises(SISOInputError, match="not a plain weights file"):
        load_ir_network(path)
    assert not os.path.exists(marker)


def test_a_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(SISOInputError, match="not a state dict of tensors"):
        load_ir_network(path)
    path = tmp_path / "text.pth"
    path.write_text("hello, I am not a checkpoint")
    with pytest.raises(SISOInputError, match="is not a PyTorch checkpoint"):  # named before torch reads it
        load_ir_network(path)
    path = tmp_path / "broken.pth"
    path.write_bytes(b"PK\x03\x04" + b"not really a zip archive" * 10)
    with pytest.raises(SISOInputError, match="could not be read"):
        load_ir_network(path)


def _save(path, state):
    torch.save(state, path)
    return path


def test_torch_refuses_a_code_running_pickle_with_the_error_the_loader_names(tmp_path):
    """load_ir_network turns pickle.UnpicklingError into its one-line refusal: that must stay the
    error torch raises for a global a weights-only load does not allow."""
    path = tmp_path / "evil.pth"
    torch.save({"weights": os.getcwd}, path)  # a function: a global no weights-only load allows
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
    with pytest.raises(SISOInputError):
        load_ir_network(path)
