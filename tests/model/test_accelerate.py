"""Optional inference speed-ups (issue 16): compiled trunk parts keep the weights' keys and the model's outputs."""

from __future__ import annotations

import pytest
import torch

from hma_zoo.sampling import FrameStepper, compile_for_inference
from tests.model.helpers import batch, tiny


@pytest.mark.parametrize("kind", ["vq", "mar"])
def test_compiling_keeps_the_state_dict_keys_and_loads_the_same_weights(kind: str) -> None:
    model = tiny(kind)
    keys = list(model.state_dict())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    compile_for_inference(model, "default")  # wrapping only: compilation happens on the first call
    assert list(model.state_dict()) == keys
    model.load_state_dict(state)  # shipped weights still load into a compiled model
    assert compile_for_inference(model, None) is model
    with pytest.raises(ValueError, match="torch.compile mode"):
        compile_for_inference(model, "fastest")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vq", "mar"])
def test_compiled_model_equals_eager(kind: str) -> None:
    """The whole-sequence forward and the cached per-frame outputs agree; greedy vq rollouts are identical. (mar
    samples are compared through their conditions: the zero-terminal-SNR step amplifies float rounding 2e4-fold.)"""
    model = tiny(kind)
    tokens, actions, names = batch(model, b=2, t=8)

    def outputs():
        full = model(tokens, actions, names)["video"]
        stepper = FrameStepper(model)
        stepper.reset(tokens[:, :1], None, names)
        trunk = model.to_trunk_tokens(tokens)
        per_frame = []
        for t in range(1, 8):
            hidden = torch.rand(2, model.num_tokens, generator=torch.Generator().manual_seed(t)) < 0.5
            per_frame.append(stepper.next_output(actions[:, t - 1], trunk[:, t], hidden))
            stepper.commit(trunk[:, t], actions[:, t - 1])
        return full, torch.stack(per_frame, 1)

    kw = dict(steps=2, temperature=0.0, unmask="confidence")
    with torch.no_grad():
        eager = outputs()
        eager_rollout = model.generate(tokens[:, :2], actions, names, 6, **kw) if kind == "vq" else None
        compile_for_inference(model, "default")
        compiled = outputs()
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    if kind == "vq":
        assert torch.equal(model.generate(tokens[:, :2], actions, names, 6, **kw), eager_rollout)
