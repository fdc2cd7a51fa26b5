"""MNIST-1D is generated once per process: every bundle holds exactly make_dataset's data, a second request does not
generate again, and what one caller does to its bundle never reaches the next."""

import numpy as np
import pytest
import torch

mnist1d_data = pytest.importorskip("mnist1d.data")


def test_bundles_hold_the_generators_data_and_stay_independent(monkeypatch):
    from kdkit.data import builtin

    state = np.random.get_state()
    fresh = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
    args = mnist1d_data.get_dataset_args()
    args.num_samples, args.train_split, args.seed = 50, 1.0, 10_000 + 42
    fresh_transfer = mnist1d_data.make_dataset(args)["x"]
    np.random.set_state(state)

    first = builtin.mnist1d(seed=0, transfer_size=50)
    assert torch.equal(first.test.tensors[0], torch.as_tensor(fresh["x_test"], dtype=torch.float32))
    assert torch.equal(first.test.tensors[1], torch.as_tensor(fresh["y_test"]))
    assert torch.equal(first.transfer.tensors[0], torch.as_tensor(fresh_transfer, dtype=torch.float32))
    pooled = torch.cat([first.train.tensors[0], first.val.tensors[0]])
    assert sorted(map(tuple, pooled.tolist())) == sorted(map(tuple, torch.as_tensor(fresh["x"], dtype=torch.float32)
                                                             .tolist()))

    first.test.tensors[1][:] = -5  # a caller that changes its labels in place
    first.train.tensors[0][:] = 0.0
    monkeypatch.setattr(mnist1d_data, "make_dataset", lambda args: pytest.fail("generated a second time"))
    second = builtin.mnist1d(seed=0, transfer_size=50)  # the same arguments: from this process's cache
    assert torch.equal(second.test.tensors[1], torch.as_tensor(fresh["y_test"]))
    assert second.train.tensors[0].abs().sum() > 0
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's global generator as it was
