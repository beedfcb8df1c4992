"""The optimizer really applies the A.3 schedule: one SGD step on loss = sum(w) (gradient 1)
moves w by exactly the learning rate of that step."""
import keras
import numpy as np
import pytest

from rltx.hyperrule import learning_rate_boundaries
from rltx.loop import PaperSchedule


@pytest.mark.parametrize("total", [10, 7813])
def test_sgd_step_size_before_and_after_each_boundary(total):
    first, second = learning_rate_boundaries(total)
    expected = {0: 0.3, first - 1: 0.3, first: 0.1, second - 1: 0.1, second: 0.1 / 3, total - 1: 0.1 / 3}
    for step, learning_rate in expected.items():
        weight = keras.Variable(np.zeros(1, np.float32))
        optimizer = keras.optimizers.SGD(PaperSchedule(0.3, total), momentum=0.0)
        optimizer.build([weight])
        optimizer.iterations.assign(step)
        optimizer.apply_gradients([(np.ones(1, np.float32), weight)])
        assert -float(weight.numpy()[0]) == pytest.approx(learning_rate, rel=1e-6), step
