import pytest
import torch
from torch import nn

from finetune.ranking.onednn import OneDNNLinear, onednn_linears

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 48), nn.GELU(), nn.Linear(48, 8, bias=False), nn.LayerNorm(8))


def test_forward_matches_nn_linear_and_the_class_is_restored():
    model, x = _model(), torch.randn(3, 5, 24)  # 3-D input: flattened to 15 rows and back
    expected = model(x)
    keys = list(model.state_dict())
    with onednn_linears(model) as swapped:
        assert swapped == 2 and isinstance(model[0], OneDNNLinear)
        got = model(x)
        with torch.inference_mode():
            cached = model(x)
    assert got.shape == (3, 5, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached, expected, atol=1e-5, rtol=1e-5)
    assert type(model[0]) is nn.Linear and type(model[2]) is nn.Linear and list(model.state_dict()) == keys
    assert "_onednn_cache" not in model[0].__dict__


def test_gradients_match_nn_linear():
    reference, swapped = _model(), _model()
    x = torch.randn(40, 24)
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    reference(x_ref).pow(2).sum().backward()
    with onednn_linears(swapped):
        swapped(x_new).pow(2).sum().backward()
    torch.testing.assert_close(x_new.grad, x_ref.grad, atol=1e-4, rtol=1e-4)
    for (name, p_ref), p_new in zip(reference.named_parameters(), swapped.parameters(), strict=True):
        torch.testing.assert_close(p_new.grad, p_ref.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_training_steps_through_onednn_end_where_default_kernels_end():
    """Ten SGD steps from the same start: the weights agree to fp32 rounding, so training is unchanged."""
    x, y = torch.randn(64, 24), torch.randn(64, 8)
    models = {"default": _model(), "onednn": _model()}
    for name, model in models.items():
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        with onednn_linears(model, enabled=name == "onednn"):
            for _ in range(10):
                optimizer.zero_grad()
                nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
    for p_default, p_onednn in zip(models["default"].parameters(), models["onednn"].parameters(), strict=True):
        torch.testing.assert_close(p_onednn, p_default, atol=1e-5, rtol=1e-4)
    assert not torch.equal(models["default"][0].weight, _model()[0].weight)  # the steps did move the weights


def test_cached_weights_follow_in_place_updates():
    model, x = _model(), torch.randn(4, 24)
    with onednn_linears(model), torch.no_grad():
        before = model(x)
        model[0].weight.add_(0.5)
        after = model(x)
    with torch.no_grad():
        expected = model(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)


def test_other_dtypes_fall_back_and_disabled_is_a_no_op():
    model = _model().double()
    x = torch.randn(6, 24, dtype=torch.float64)
    expected = model(x)
    with onednn_linears(model):
        assert torch.equal(model(x), expected)  # float64: plain nn.Linear arithmetic, bit for bit
    with onednn_linears(model, enabled=False) as swapped:
        assert swapped == 0 and type(model[0]) is nn.Linear


def test_training_goes_through_onednn_only_on_cpus_other_than_intels(tmp_path, monkeypatch):
    import finetune.ranking.onednn as onednn

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
    assert onednn.cpu_vendor(str(info)) == "AuthenticAMD"
    assert onednn.cpu_vendor(str(tmp_path / "absent")) == ""
    for vendor, expected in (("GenuineIntel", False), ("AuthenticAMD", True), ("", True)):
        monkeypatch.setattr(onednn, "cpu_vendor", lambda vendor=vendor: vendor)
        assert onednn.onednn_for_training("cpu", "fp32") is expected
        assert onednn.onednn_for_training("cpu", "bf16") is False
        assert onednn.onednn_for_training("cuda", "fp32") is False
