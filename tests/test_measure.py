"""companion.measure: saved-tensor bytes, CPU time, parameter counts."""

import time

import torch

from companion.measure import count_parameters, cpu_time, cpu_time_ratio, saved_tensor_bytes


def test_saved_tensor_bytes_counts_each_buffer_once_and_slices_by_their_own_size():
    x = torch.randn(10, 4, requires_grad=True)

    def halves():  # exp keeps its output y (40 floats); pow keeps the two halves of y: the same 160 bytes
        y = x.exp()
        return y[:5].pow(2).sum() + y[5:].pow(2).sum()

    assert saved_tensor_bytes(halves) == 10 * 4 * 4
    data, w = torch.randn(100, 4), torch.randn(4, 3, requires_grad=True)
    assert saved_tensor_bytes(lambda: (data[:10] @ w).sum(), exclude=[w]) == 10 * 4 * 4
    a = torch.randn(10, 4, requires_grad=True)  # now the product needs w too, to compute a's gradient
    assert saved_tensor_bytes(lambda: (a @ w).sum()) == 10 * 4 * 4 + 4 * 3 * 4
    assert saved_tensor_bytes(lambda: (a @ w).sum(), exclude=[w]) == 10 * 4 * 4


def test_count_parameters_counts_trainable_scalars():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    assert count_parameters(model) == 3 * 4 + 4 + 4 * 2 + 2
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 4 + 4 * 2 + 2


def test_cpu_time_counts_work_not_waiting():
    def busy():
        total = 0
        for i in range(200_000):
            total += i
        return total

    assert cpu_time(lambda: time.sleep(0.05)) < 0.02  # sleeping is not CPU time
    assert cpu_time(busy) > 0
    assert cpu_time_ratio(lambda: [busy() for _ in range(4)], busy) > 2
