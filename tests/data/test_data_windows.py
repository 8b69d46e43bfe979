import numpy as np
import pytest
from data_helpers import ARM, make_episode

from hma_zoo.data.mixture import mixture_weights
from hma_zoo.data.windows import WindowSpec, extract_window, num_windows, window_starts


def test_window_and_chunks_hand_computed():
    ep = make_episode("e", ARM, 11)  # stored stride 2 -> 20 actions; action row k = (k, k + 0.5)
    spec = WindowSpec(window=3, action_dim=2, stored_stride=2, frame_skip=2)
    assert spec.stride == 4 and spec.chunk_dim == 8 and spec.step == 6
    assert list(window_starts(11, spec)) == [0, 6]
    frames, actions, valid = extract_window(ep.frames, ep.actions, 6, spec, a_max=10)
    np.testing.assert_array_equal(frames[:, 1, 1, 0], [6, 8, 10])
    expected_row0 = np.array([12, 12.5, 13, 13.5, 14, 14.5, 15, 15.5, 0, 0], np.float32)  # control steps 12..15
    np.testing.assert_array_equal(actions[0], expected_row0)
    np.testing.assert_array_equal(actions[1, :8], np.array([[k, k + 0.5] for k in range(16, 20)]).ravel())
    np.testing.assert_array_equal(valid, [True, True, False])  # no control steps 20..23 in the episode
    assert not actions[2].any() and actions.dtype == np.float32


def test_num_windows_edges():
    spec = WindowSpec(window=4, action_dim=1)
    assert num_windows(3, spec) == 0 and num_windows(4, spec) == 1 and num_windows(7, spec) == 1
    assert num_windows(8, spec) == 2
    assert list(window_starts(9, WindowSpec(window=4, action_dim=1, hop=2))) == [0, 2, 4]
    assert list(window_starts(9, spec, offset=1)) == [1, 5]


def test_extract_refuses_small_a_max():
    ep = make_episode("e", ARM, 5)
    with pytest.raises(ValueError, match="a_max"):
        extract_window(ep.frames, ep.actions, 0, WindowSpec(2, 2, 2), a_max=3)


def test_mixture_weights_temperature_and_explicit():
    p = mixture_weights({"a": 1000, "b": 8}, temperature=3.0)
    assert p["a"] == pytest.approx(10 / 12) and p["b"] == pytest.approx(2 / 12)
    p1 = mixture_weights({"a": 1000, "b": 8, "c": 0}, temperature=1.0)
    assert p1["a"] == pytest.approx(1000 / 1008) and p1["c"] == 0
    pe = mixture_weights({"a": 10, "b": 10}, weights={"a": 3.0})
    assert pe == {"a": 1.0, "b": 0.0}
    with pytest.raises(KeyError, match="unknown"):
        mixture_weights({"a": 1}, weights={"z": 1.0})


def test_public_names_resolve():
    import hma_zoo.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None
